"""Command line: one subcommand per pipeline stage (``python -m tclsta <stage> ...``).

Snakemake rules, tests and users call the same code. Every stage takes its
settings either from a config file (``--config config.yaml --dataset NAME``)
or as the JSON the workflow passes (``--settings '{...}'``); stages that
need none take neither.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import pandas as pd

from tclsta.atomic import atomic_path
from tclsta.config import (DatasetConfig, dataset_settings, for_stream, load_config, parse_dataset, section_dict,
                           validate_config)
from tclsta.errors import BadConfigError, ShardWriteError, TclstaError

log = logging.getLogger("tclsta")


def resolve_settings(args: argparse.Namespace) -> tuple[DatasetConfig, dict]:
    """The dataset's typed config and the plain dict it came from."""
    if args.settings:
        try:
            settings = json.loads(args.settings)
        except json.JSONDecodeError as exc:
            raise BadConfigError("--settings", f"not valid JSON: {exc}") from exc
    elif args.config and args.dataset:
        settings = dataset_settings(load_config(args.config), args.dataset)
    else:
        raise BadConfigError("--config/--dataset", "give --config FILE --dataset NAME, or --settings JSON")
    name = settings.get("name", "dataset")
    body = {k: v for k, v in settings.items() if k != "name"}
    validate_config({"datasets": {name: body}}, "--settings" if args.settings else str(args.config))
    return parse_dataset(settings), settings


def cmd_demo(args: argparse.Namespace) -> None:
    from tclsta.demo import make_demo_dataset

    dataset, _ = resolve_settings(args)
    root, splits = Path(dataset.root), Path(dataset.splits_dir)
    if splits.parent != root.parent or root.name != "videos" or splits.name != "splits":
        raise BadConfigError(f"datasets.{dataset.name}", "a demo dataset needs root: <dir>/videos and splits_dir: <dir>/splits")
    demo = dataset.demo
    make_demo_dataset(root.parent, classes_per_kind=demo.classes_per_kind, groups=demo.groups,
                      clips_per_group=demo.clips_per_group, num_frames=demo.num_frames,
                      width=demo.width, height=demo.height, seed=demo.seed, kind=demo.kind, test_groups=demo.test_groups)


def cmd_manifest(args: argparse.Namespace) -> None:
    from tclsta.data.manifest import build_manifest
    from tclsta.datasets import require_data

    dataset, settings = resolve_settings(args)
    require_data(settings)
    manifest = build_manifest(dataset)
    with atomic_path(args.output) as tmp:
        manifest.to_csv(tmp, index=False)
    log.info("%s: %s", args.output, manifest["split"].value_counts().to_dict())


def cmd_extract(args: argparse.Namespace) -> None:
    from tclsta.data.manifest import read_manifest
    from tclsta.preprocess import extract_shard

    dataset, _ = resolve_settings(args)
    extract_shard(read_manifest(args.manifest), args.shard, dataset.preprocess, args.output, args.rejected, args.previous,
                  args.workers)


def cmd_rawframes(args: argparse.Namespace) -> None:
    from tclsta.data.manifest import read_manifest
    from tclsta.data.rawframes import import_shard

    dataset, _ = resolve_settings(args)
    import_shard(read_manifest(args.manifest), args.shard, dataset, args.output, args.rejected)


def cmd_flow(args: argparse.Namespace) -> None:
    from tclsta.preprocess import flow_shard

    dataset, _ = resolve_settings(args)
    flow_shard(args.frames, dataset.flow, args.output, args.workers, args.previous)


def cmd_pack(args: argparse.Namespace) -> None:
    from tclsta.preprocess import pack_shard

    dataset, _ = resolve_settings(args)
    pack_shard(args.frames, args.flow, args.output, dataset.flow.bound)


def cmd_rejected(args: argparse.Namespace) -> None:
    from tclsta.preprocess import REJECTED_COLUMNS

    tables = [pd.read_csv(p, dtype=str) for p in args.inputs]
    with atomic_path(args.output) as tmp:
        pd.concat(tables, ignore_index=True).reindex(columns=REJECTED_COLUMNS).to_csv(tmp, index=False)


def cmd_train(args: argparse.Namespace) -> None:
    import torch

    from tclsta.data.manifest import read_manifest
    from tclsta.train import train_stream

    dataset, _ = resolve_settings(args)
    torch.set_num_threads(args.threads)
    preprocessing = {"preprocess": section_dict(dataset.preprocess), "flow": section_dict(dataset.flow)}
    train_stream(args.shards, read_manifest(args.manifest), args.stream, for_stream(dataset.model, args.stream),
                 for_stream(dataset.train, args.stream), args.checkpoint, args.history, preprocessing)


def cmd_fetch_weights(args: argparse.Namespace) -> None:
    from tclsta.pretrained import fetch_weights

    fetch_weights(args.output)


def cmd_score(args: argparse.Namespace) -> None:
    import torch

    from tclsta.data.manifest import read_manifest
    from tclsta.evaluate import score_stream

    dataset, _ = resolve_settings(args)
    torch.set_num_threads(args.threads)
    score_stream(args.checkpoint, args.shards, read_manifest(args.manifest), dataset.train, args.output)


def cmd_fuse(args: argparse.Namespace) -> None:
    from tclsta.data.manifest import class_names, read_manifest
    from tclsta.evaluate import fuse_streams

    dataset, _ = resolve_settings(args)
    fuse_streams(args.rgb, args.flow, dataset.fusion, class_names(read_manifest(args.manifest)), args.output)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from tclsta.data.manifest import read_manifest
    from tclsta.evaluate import evaluate

    dataset, _ = resolve_settings(args)
    extra: dict = {}
    if dataset.format == "demo":
        from tclsta.demo import expected_ceilings

        extra["expected_ceilings"] = expected_ceilings(dataset.demo.classes_per_kind, dataset.demo.kind)
    if args.rejected:
        extra["rejected"] = pd.read_csv(args.rejected, dtype=str).fillna("").to_dict("records")
    evaluate(read_manifest(args.manifest), args.rgb, args.flow, args.fusion, dataset.fusion, args.output, dataset.name, extra,
             args.collaborative)


def cmd_features(args: argparse.Namespace) -> None:
    import torch

    from tclsta.data.manifest import read_manifest
    from tclsta.features import extract_features

    dataset, _ = resolve_settings(args)
    torch.set_num_threads(args.threads)
    extract_features(args.checkpoint, args.shards, read_manifest(args.manifest), dataset.train, args.output)


def cmd_collaborative(args: argparse.Namespace) -> None:
    import torch

    from tclsta.collaborative import train_collaborative

    dataset, _ = resolve_settings(args)
    torch.set_num_threads(args.threads)
    train_collaborative(args.rgb, args.flow, dataset.collaborative, dataset.train.device, args.checkpoint,
                        args.history, args.output)


def cmd_ablation(args: argparse.Namespace) -> None:
    from tclsta.ablation import ablation_table

    dataset, _ = resolve_settings(args)
    table = ablation_table(args.results, dataset.fusion)
    with atomic_path(args.output) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")


def cmd_report(args: argparse.Namespace) -> None:
    from tclsta.report import write_report

    _, settings = resolve_settings(args)
    write_report(args.output, metrics_path=args.metrics, manifest_path=args.manifest,
                 history_paths={"rgb": args.rgb_history, "flow": args.flow_history}, config=settings,
                 benchmark_paths=sorted(args.benchmarks_dir.glob("*/*.tsv")) if args.benchmarks_dir else [],
                 attention_json=args.attention_json, attention_png=args.attention_png, plot_paths=dict(args.plot),
                 ablation_csv=args.ablation[0] if args.ablation else None)


def cmd_figures(args: argparse.Namespace) -> None:
    from tclsta.figures import collect_figures, readme_blocks, write_figures

    if args.print:
        for results in args.results:
            print("\n\n".join(readme_blocks(collect_figures(results)).values()))
    else:
        write_figures(args.results, args.output_dir, args.readme)


def cmd_attention(args: argparse.Namespace) -> None:
    import torch

    from tclsta.attention_view import write_attention
    from tclsta.data.manifest import read_manifest

    torch.set_num_threads(args.threads)
    write_attention(args.model_dir, read_manifest(args.manifest), args.shards, args.json_output, args.png_output,
                    args.videos, args.device)


def cmd_predict(args: argparse.Namespace) -> int:
    from tclsta.predict import Predictor

    predictor = Predictor(args.model_dir, args.device)
    results, failed = [], 0
    for video in args.videos:
        try:
            prediction = predictor.predict(video)
        except TclstaError as exc:  # one unreadable video does not stop the others
            log.error("%s", exc)
            results.append({"video": str(video), "error": str(exc)})
            failed += 1
            continue
        results.append({"video": prediction.video, "top5": [{"class": c, "score": p} for c, p in prediction.top5]})
        if not args.json:
            print(prediction.video)
            for rank, (name, score) in enumerate(prediction.top5, 1):
                print(f"  {rank}. {name:<30} {score:.3f}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> None:
    from tclsta.export import export_bundle

    export_bundle(args.results, args.output, onnx=not args.no_onnx)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tclsta", description=__doc__.splitlines()[0])
    stages = parser.add_subparsers(dest="stage", required=True)

    def stage(name: str, func, help: str) -> argparse.ArgumentParser:
        sub = stages.add_parser(name, help=help)
        sub.add_argument("--config", type=Path, help="config YAML (with --dataset)")
        sub.add_argument("--dataset", help="dataset name in the config")
        sub.add_argument("--settings", help="the dataset's resolved settings as JSON (what the workflow passes)")
        sub.set_defaults(func=func)
        return sub

    stage("demo", cmd_demo, "generate the synthetic demo dataset")
    sub = stage("manifest", cmd_manifest, "build the video manifest from the split files")
    sub.add_argument("output", type=Path)
    sub = stage("extract", cmd_extract, "decode and resize the videos of one shard")
    sub.add_argument("--shard", type=int, required=True)
    sub.add_argument("--workers", type=int, default=1, help="videos decoded and encoded at once")
    sub.add_argument("--previous", type=Path, help="the shard an earlier run packed: unchanged videos are copied from it")
    sub.add_argument("manifest", type=Path)
    sub.add_argument("output", type=Path)
    sub.add_argument("rejected", type=Path, help="CSV listing videos left out (on_bad_video: skip)")
    sub = stage("rawframes", cmd_rawframes, "import one shard of existing frames and flow (format rawframes)")
    sub.add_argument("--shard", type=int, required=True)
    sub.add_argument("manifest", type=Path)
    sub.add_argument("output", type=Path)
    sub.add_argument("rejected", type=Path, help="CSV listing folders left out (on_bad_video: skip)")
    sub = stage("flow", cmd_flow, "TV-L1 optical flow of a frames shard")
    sub.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    sub.add_argument("--previous", type=Path, help="the shard an earlier run packed: unchanged flow is copied from it")
    sub.add_argument("frames", type=Path)
    sub.add_argument("output", type=Path)
    sub = stages.add_parser("fetch-weights", help="download torchvision's ImageNet weights file (its hash checked)")
    sub.set_defaults(func=cmd_fetch_weights)
    sub.add_argument("output", type=Path, help="resources/<torchvision file name>, e.g. resources/resnet50-0676ba61.pth")
    sub = stages.add_parser("rejected", help="collect the per-shard lists of rejected videos into one CSV")
    sub.set_defaults(func=cmd_rejected)
    sub.add_argument("output", type=Path)
    sub.add_argument("inputs", type=Path, nargs="+")
    sub = stage("pack", cmd_pack, "merge frames and flow into the final shard")
    sub.add_argument("frames", type=Path)
    sub.add_argument("flow", type=Path)
    sub.add_argument("output", type=Path)
    for name, func, help in (
        ("train", cmd_train, "train one stream"),
        ("score", cmd_score, "score val/test videos with a trained stream"),
        ("features", cmd_features, "cache a trained stream's frame features of every video (HDF5)"),
    ):
        sub = stage(name, func, help)
        sub.add_argument("--threads", type=int, default=os.cpu_count() or 1)
        sub.add_argument("--manifest", type=Path, required=True)
        sub.add_argument("--shards", type=Path, nargs="+", required=True)
        if name == "train":
            sub.add_argument("--stream", choices=["rgb", "flow"], required=True)
            sub.add_argument("--history", type=Path, required=True)
        else:
            sub.add_argument("--output", type=Path, required=True)
        sub.add_argument("--checkpoint", type=Path, required=True)
    for name, func, help in (
        ("fuse", cmd_fuse, "learn the fusion weights on validation scores"),
        ("evaluate", cmd_evaluate, "test-split metrics of each stream and the fusions"),
    ):
        sub = stage(name, func, help)
        sub.add_argument("--manifest", type=Path, required=True)
        sub.add_argument("--rgb", type=Path, required=True, help="scores CSV of the rgb stream")
        sub.add_argument("--flow", type=Path, required=True, help="scores CSV of the flow stream")
        sub.add_argument("output", type=Path)
    sub.add_argument("--fusion", type=Path, required=True)
    sub.add_argument("--rejected", type=Path, help="rejected.csv of the dataset (videos left out)")
    sub.add_argument("--collaborative", type=Path, help="scores CSV of the collaborative model")
    sub = stage("collaborative", cmd_collaborative, "train the collaborative model on cached features; score val/test")
    sub.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    sub.add_argument("--rgb", type=Path, required=True, help="features file of the rgb stream")
    sub.add_argument("--flow", type=Path, required=True, help="features file of the flow stream")
    sub.add_argument("--checkpoint", type=Path, required=True)
    sub.add_argument("--history", type=Path, required=True)
    sub.add_argument("--output", type=Path, required=True, help="scores CSV")
    sub = stage("ablation", cmd_ablation, "tabulate the ablation variants' test accuracy")
    sub.add_argument("results", type=Path, help="the dataset's results folder, e.g. results/demo")
    sub.add_argument("output", type=Path)
    sub = stage("report", cmd_report, "write the self-contained HTML report")
    sub.add_argument("--metrics", type=Path, required=True)
    sub.add_argument("--manifest", type=Path, required=True)
    sub.add_argument("--rgb-history", type=Path, required=True)
    sub.add_argument("--flow-history", type=Path, required=True)
    sub.add_argument("--benchmarks-dir", type=Path, help="Snakemake benchmark files, <dir>/<rule>/<job>.tsv")
    sub.add_argument("--attention-json", type=Path, help="attention.json of the attention stage (with --attention-png)")
    sub.add_argument("--attention-png", type=Path, help="the attention figure of the attention stage")
    sub.add_argument("--ablation", type=Path, nargs="*", default=[], help="the dataset's ablation.csv, if any")
    sub.add_argument("--plot", nargs=2, action="append", default=[], metavar=("NAME", "PNG"),
                     help="also save the report's figure NAME (confusion, confusion_streams, fusion_weights, training) as PNG")
    sub.add_argument("output", type=Path)
    sub = stages.add_parser("figures", help="rewrite the README's result tables from results folders (make figures)")
    sub.set_defaults(func=cmd_figures)
    sub.add_argument("--readme", type=Path, default=Path("README.md"))
    sub.add_argument("--output-dir", type=Path, default=Path("docs/figures"), help="where the figures are recorded as JSON")
    sub.add_argument("--print", action="store_true", help="only print the tables the README would get")
    sub.add_argument("results", type=Path, nargs="+", help="results folders, e.g. results/demo results/benchmark")
    sub = stages.add_parser("attention", help="spatial and temporal attention of a few test videos (JSON and a PNG figure)")
    sub.set_defaults(func=cmd_attention)
    sub.add_argument("model_dir", type=Path, help="a dataset's results folder, e.g. results/demo")
    sub.add_argument("--manifest", type=Path, required=True)
    sub.add_argument("--shards", type=Path, nargs="+", required=True)
    sub.add_argument("--videos", type=int, default=4, help="how many test videos (from different classes)")
    sub.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    sub.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    sub.add_argument("json_output", type=Path)
    sub.add_argument("png_output", type=Path)
    sub = stages.add_parser("predict", help="top-5 classes of new videos with a trained dataset's models")
    sub.set_defaults(func=cmd_predict)
    sub.add_argument("model_dir", type=Path, help="a dataset's results folder, e.g. results/demo, or a bundle from export")
    sub.add_argument("videos", type=Path, nargs="+")
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    sub = stages.add_parser("export", help="write a dataset's models (TorchScript, ONNX), fusion weights and settings as one bundle")
    sub.set_defaults(func=cmd_export)
    sub.add_argument("results", type=Path, help="a dataset's results folder, e.g. results/demo")
    sub.add_argument("output", type=Path, help="the bundle folder to write")
    sub.add_argument("--no-onnx", action="store_true", help="TorchScript only")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.func(args) or 0
    except ShardWriteError as exc:
        log.error("%s", exc)
        # HDF5 can crash (SIGSEGV) freeing the objects of a file whose writes failed; nothing is left to
        # clean up (the temporary file is already removed), so exit without freeing them.
        logging.shutdown()
        os._exit(1)
    except TclstaError as exc:
        log.error("%s", exc)
        return 1
