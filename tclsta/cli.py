"""Command line: one subcommand per pipeline stage (``python -m tclsta <stage> ...``).

Snakemake rules, tests and users call the same code. A stage that reads config
takes its settings either from a config file (``--config config.yaml --dataset
NAME``) or as the JSON the workflow passes (``--settings '{...}'``), and sees
only the keys it declares (:mod:`tclsta.settings`). Every file a stage writes
is an option: ``--output`` for its main result, other outputs named for what
they hold (``--history``, ``--rejected``, ``--model``, ``--png``).

Errors a user can cause (:class:`tclsta.errors.TclstaError`) end the command
with one line on stderr and exit status 2.
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
from tclsta.config import DatasetConfig, TrainConfig, dataset_settings, for_stream, load_config, section_dict, validate_settings
from tclsta.errors import BadConfigError, ShardWriteError, TclstaError
from tclsta.settings import StageSettings, declared_settings

log = logging.getLogger("tclsta")
CPUS = os.cpu_count() or 1


def resolve_settings(args: argparse.Namespace, declared: StageSettings) -> tuple[DatasetConfig, dict]:
    """The stage's typed settings (only its declared keys) and the plain dict they came from."""
    if args.settings:
        try:
            settings = json.loads(args.settings)
        except json.JSONDecodeError as exc:
            raise BadConfigError("--settings", f"not valid JSON: {exc}") from exc
        source = "--settings"
    elif args.config and args.dataset:
        settings = declared.select(dataset_settings(load_config(args.config), args.dataset))
        source = str(args.config)
    else:
        raise BadConfigError("--config/--dataset", "give --config FILE --dataset NAME, or --settings JSON")
    validate_settings(settings, source)
    return declared.parse(settings), settings


def cmd_demo(args: argparse.Namespace) -> None:
    from tclsta.demo import demo_dataset

    dataset, _ = resolve_settings(args, declared_settings("demo"))
    demo_dataset(dataset)


def cmd_manifest(args: argparse.Namespace) -> None:
    from tclsta.data.manifest import build_manifest
    from tclsta.datasets import require_data

    dataset, settings = resolve_settings(args, declared_settings("manifest"))
    require_data(settings)
    manifest = build_manifest(dataset)
    with atomic_path(args.output) as tmp:
        manifest.to_csv(tmp, index=False)
    log.info("%s: %s", args.output, manifest["split"].value_counts().to_dict())


def cmd_extract(args: argparse.Namespace) -> None:
    from tclsta.data.manifest import read_shard_list
    from tclsta.preprocess import extract_shard

    dataset, _ = resolve_settings(args, declared_settings("extract"))
    extract_shard(read_shard_list(args.manifest), args.shard, dataset.preprocess, args.output, args.rejected, args.previous,
                  args.workers)


def cmd_rawframes(args: argparse.Namespace) -> None:
    from tclsta.data.manifest import read_shard_list
    from tclsta.data.rawframes import import_shard

    dataset, _ = resolve_settings(args, declared_settings("rawframes"))
    import_shard(read_shard_list(args.manifest), args.shard, dataset, args.output, args.rejected)


def cmd_flow(args: argparse.Namespace) -> None:
    from tclsta.preprocess import flow_shard

    dataset, _ = resolve_settings(args, declared_settings("flow"))
    flow_shard(args.frames, dataset.flow, args.output, args.workers, args.previous)


def cmd_pack(args: argparse.Namespace) -> None:
    from tclsta.preprocess import pack_shard

    dataset, _ = resolve_settings(args, declared_settings("pack"))
    pack_shard(args.frames, args.flow, args.output, dataset.flow.bound)


def cmd_rejected(args: argparse.Namespace) -> None:
    from tclsta.data.manifest import read_manifest
    from tclsta.preprocess import REJECTED_COLUMNS

    rejected = pd.concat([pd.read_csv(p, dtype=str) for p in args.inputs], ignore_index=True).reindex(columns=REJECTED_COLUMNS)
    listed = rejected[rejected["video_id"].isin(read_manifest(args.manifest)["video_id"])]  # shared shards hold others' too
    with atomic_path(args.output) as tmp:
        listed.to_csv(tmp, index=False)


def cmd_train(args: argparse.Namespace) -> None:
    import torch

    from tclsta.data.manifest import read_manifest
    from tclsta.predict import PREDICT_SETTINGS
    from tclsta.train import train_stream

    dataset, settings = resolve_settings(args, declared_settings("train"))
    torch.set_num_threads(args.threads)
    train = for_stream(dataset.train, args.stream)
    # the checkpoint records the stream's own test protocol (its train.<stream> overrides applied)
    recorded = PREDICT_SETTINGS.select({**settings, "train": section_dict(train)})
    train_stream(args.shards, read_manifest(args.manifest), args.stream, for_stream(dataset.model, args.stream), train,
                 args.output, args.history, recorded)


def cmd_fetch_weights(args: argparse.Namespace) -> None:
    from tclsta.pretrained import fetch_weights

    fetch_weights(args.output)


def cmd_pipeline_dir(args: argparse.Namespace) -> None:
    from tclsta.locations import PIPELINE_DIR

    print(PIPELINE_DIR)


def cmd_score(args: argparse.Namespace) -> None:
    import torch

    from tclsta.data.manifest import read_manifest
    from tclsta.inference import score_stream

    dataset, _ = resolve_settings(args, declared_settings("score"))
    torch.set_num_threads(args.threads)
    score_stream(args.checkpoint, args.shards, read_manifest(args.manifest), dataset.train, args.output, dataset.model)


def cmd_features(args: argparse.Namespace) -> None:
    import torch

    from tclsta.data.manifest import read_manifest
    from tclsta.features import extract_features, feature_splits

    dataset, _ = resolve_settings(args, declared_settings("features"))
    torch.set_num_threads(args.threads)
    extract_features(args.checkpoint, args.shards, read_manifest(args.manifest), dataset.train, args.output,
                     feature_splits(dataset.collaborative.fit_on))


def cmd_collaborative(args: argparse.Namespace) -> None:
    import torch

    from tclsta.collaborative import train_collaborative
    from tclsta.data.manifest import read_manifest

    dataset, _ = resolve_settings(args, declared_settings("collaborative"))
    torch.set_num_threads(args.threads)
    train_collaborative(args.rgb, args.flow, dataset.collaborative, dataset.train.device, args.model,
                        args.history, args.output, read_manifest(args.manifest))


def cmd_fuse(args: argparse.Namespace) -> None:
    from tclsta.data.manifest import class_names, read_manifest
    from tclsta.evaluate import fuse_streams

    dataset, _ = resolve_settings(args, declared_settings("fuse"))
    manifest = read_manifest(args.manifest)
    fuse_streams(args.rgb, args.flow, dataset.fusion, class_names(manifest), args.output, manifest)


def cmd_model_choice(args: argparse.Namespace) -> None:
    from tclsta.model_choice import choose_model

    dataset, _ = resolve_settings(args, declared_settings("model-choice"))
    choose_model(args.rgb, args.flow, args.collaborative, dataset, args.output)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from tclsta.data.manifest import read_manifest
    from tclsta.evaluate import evaluate
    from tclsta.inference import stream_score_choices

    dataset, _ = resolve_settings(args, declared_settings("evaluate"))
    extra: dict = {}
    if dataset.format == "demo":
        from tclsta.demo import expected_ceilings

        extra["expected_ceilings"] = expected_ceilings(dataset.demo.classes_per_kind, dataset.demo.kind)
    if args.rejected:
        extra["rejected"] = pd.read_csv(args.rejected, dtype=str).fillna("").to_dict("records")
    extra["stream_scores"] = stream_score_choices({"rgb": args.rgb, "flow": args.flow}, dataset.model)
    if args.model_choice:
        extra["model_choice"] = json.loads(Path(args.model_choice).read_text())
    evaluate(read_manifest(args.manifest), args.rgb, args.flow, args.fusion, dataset.fusion, args.output, dataset.name, extra,
             args.collaborative)


def cmd_ablation(args: argparse.Namespace) -> None:
    from tclsta.ablation import ablation_table

    dataset, _ = resolve_settings(args, declared_settings("ablation"))
    table = ablation_table(args.results, dataset.fusion)
    with atomic_path(args.output) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")


def cmd_report(args: argparse.Namespace) -> None:
    from tclsta.report import write_report

    _, settings = resolve_settings(args, declared_settings("report"))
    write_report(args.output, metrics_path=args.metrics, manifest_path=args.manifest,
                 history_paths={"rgb": args.rgb_history, "flow": args.flow_history}, config=settings,
                 benchmark_dirs=args.benchmarks_dir,
                 attention_json=args.attention_json, attention_png=args.attention_png, plot_paths=dict(args.plot),
                 ablation_csv=args.ablation[0] if args.ablation else None)


def cmd_split_report(args: argparse.Namespace) -> None:
    from tclsta.split_report import write_split_report

    write_split_report(args.dataset, args.splits, args.ablation, args.output, args.table)


def cmd_figures(args: argparse.Namespace) -> None:
    from tclsta.figures import collect_figures, readme_blocks, write_figures

    config = load_config(args.config)
    if args.print:
        for results in args.results:
            print("\n\n".join(readme_blocks(collect_figures(results, config)).values()))
    else:
        write_figures(args.results, args.output_dir, args.readme, config)


def cmd_attention(args: argparse.Namespace) -> None:
    import torch

    from tclsta.attention_view import write_attention
    from tclsta.data.manifest import read_manifest

    dataset, _ = resolve_settings(args, declared_settings("attention"))
    benchmark = dataset.demo if dataset.format == "demo" and dataset.demo.kind == "benchmark" else None
    torch.set_num_threads(args.threads)
    write_attention(args.results, read_manifest(args.manifest), args.shards, args.output, args.png, args.videos, args.device,
                    benchmark, dataset.train.inference_batch)


def cmd_predict(args: argparse.Namespace) -> int:
    from tclsta.predict import Predictor

    predictor = Predictor(args.results, args.device, args.model, args.inference_batch)
    results, failed = [], 0
    for video in args.videos:
        try:
            prediction = predictor.predict(video, args.threshold)
        except TclstaError as exc:  # one unreadable video does not stop the others
            log.error("%s", exc)
            results.append({"video": str(video), "error": str(exc)})
            failed += 1
            continue
        result = {"video": prediction.video, "top5": [{"class": c, "score": p} for c, p in prediction.top5]}
        if prediction.labels is not None:  # a multi-label model
            result |= {"probabilities": prediction.probabilities, "labels": prediction.labels}
        results.append(result)
        if not args.json:
            print(prediction.video)
            for rank, (name, score) in enumerate(prediction.top5, 1):
                print(f"  {rank}. {name:<30} {score:.3f}")
            if prediction.labels is not None:
                print(f"  above {args.threshold}: {', '.join(prediction.labels) or 'none'}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> None:
    from tclsta.export import export_bundle

    export_bundle(args.results, args.output)


def cmd_export_rawframes(args: argparse.Namespace) -> None:
    from tclsta.data.manifest import read_manifest
    from tclsta.data.rawframes_export import export_rawframes

    export_rawframes(read_manifest(args.manifest), args.shards, args.output)


def add_settings_options(parser: argparse.ArgumentParser) -> None:
    """Where a stage that reads config gets it from."""
    parser.add_argument("--config", type=Path, help="config YAML (with --dataset)")
    parser.add_argument("--dataset", help="dataset name in the config")
    parser.add_argument("--settings", help="the stage's settings as JSON (what the workflow passes)")


def add_shard_inputs(parser: argparse.ArgumentParser) -> None:
    """The videos a stream stage reads, and its CPU threads."""
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--shards", type=Path, nargs="+", required=True)
    parser.add_argument("--threads", type=int, default=CPUS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tclsta", description=__doc__.splitlines()[0])
    stages = parser.add_subparsers(dest="stage", required=True)

    sub = stages.add_parser("demo", help="generate the synthetic demo dataset (where its config entry says)")
    add_settings_options(sub)
    sub.set_defaults(func=cmd_demo)

    sub = stages.add_parser("manifest", help="build the video manifest from the split files")
    add_settings_options(sub)
    sub.add_argument("--output", type=Path, required=True, help="manifest CSV")
    sub.set_defaults(func=cmd_manifest)

    sub = stages.add_parser("extract", help="decode and resize the videos of one shard")
    add_settings_options(sub)
    sub.add_argument("--manifest", type=Path, required=True)
    sub.add_argument("--shard", type=int, required=True)
    sub.add_argument("--workers", type=int, default=1, help="videos decoded and encoded at once")
    sub.add_argument("--previous", type=Path, help="the shard an earlier run packed: unchanged videos are copied from it")
    sub.add_argument("--output", type=Path, required=True, help="frames HDF5 of the shard")
    sub.add_argument("--rejected", type=Path, required=True, help="CSV listing videos left out (on_bad_video: skip)")
    sub.set_defaults(func=cmd_extract)

    sub = stages.add_parser("flow", help="TV-L1 optical flow of a frames shard")
    add_settings_options(sub)
    sub.add_argument("--frames", type=Path, required=True, help="frames HDF5 of the shard")
    sub.add_argument("--previous", type=Path, help="the shard an earlier run packed: unchanged flow is copied from it")
    sub.add_argument("--workers", type=int, default=CPUS)
    sub.add_argument("--output", type=Path, required=True, help="flow HDF5 of the shard")
    sub.set_defaults(func=cmd_flow)

    sub = stages.add_parser("pack", help="merge frames and flow into the final shard")
    add_settings_options(sub)
    sub.add_argument("--frames", type=Path, required=True)
    sub.add_argument("--flow", type=Path, required=True)
    sub.add_argument("--output", type=Path, required=True, help="the packed shard")
    sub.set_defaults(func=cmd_pack)

    sub = stages.add_parser("rawframes", help="import one shard of existing frames and flow (format rawframes)")
    add_settings_options(sub)
    sub.add_argument("--manifest", type=Path, required=True, help="the shard's list of videos")
    sub.add_argument("--shard", type=int, required=True)
    sub.add_argument("--output", type=Path, required=True, help="the shard")
    sub.add_argument("--rejected", type=Path, required=True, help="CSV listing folders left out (on_bad_video: skip)")
    sub.set_defaults(func=cmd_rawframes)

    sub = stages.add_parser("fetch-weights", help="download torchvision's ImageNet weights file (its hash checked)")
    sub.add_argument("--output", type=Path, required=True,
                     help="resources/<torchvision file name>, e.g. resources/resnet50-0676ba61.pth")
    sub.set_defaults(func=cmd_fetch_weights)

    sub = stages.add_parser("pipeline-dir", help="print the folder holding the workflow: Snakefile, rules/, workflow/profiles/")
    sub.set_defaults(func=cmd_pipeline_dir)

    sub = stages.add_parser("rejected", help="collect the per-shard lists of rejected videos into one CSV")
    sub.add_argument("--manifest", type=Path, required=True, help="the run's manifest: its videos are listed, no others")
    sub.add_argument("--output", type=Path, required=True)
    sub.add_argument("inputs", type=Path, nargs="+", help="the shards' rejected-video CSVs")
    sub.set_defaults(func=cmd_rejected)

    sub = stages.add_parser("train", help="train one stream")
    add_settings_options(sub)
    sub.add_argument("--stream", choices=["rgb", "flow"], required=True)
    add_shard_inputs(sub)
    sub.add_argument("--output", type=Path, required=True, help="the trained stream's checkpoint")
    sub.add_argument("--history", type=Path, required=True, help="per-epoch metrics CSV (and JSON beside it)")
    sub.set_defaults(func=cmd_train)

    sub = stages.add_parser("score", help="score val/test videos with a trained stream")
    add_settings_options(sub)
    sub.add_argument("--checkpoint", type=Path, required=True, help="the trained stream")
    add_shard_inputs(sub)
    sub.add_argument("--output", type=Path, required=True, help="scores CSV")
    sub.set_defaults(func=cmd_score)

    sub = stages.add_parser("features", help="cache a trained stream's frame features of the videos the collaborative model reads (HDF5)")
    add_settings_options(sub)
    sub.add_argument("--checkpoint", type=Path, required=True, help="the trained stream")
    add_shard_inputs(sub)
    sub.add_argument("--output", type=Path, required=True, help="features HDF5")
    sub.set_defaults(func=cmd_features)

    sub = stages.add_parser("collaborative", help="train the collaborative model on cached features; score val/test")
    add_settings_options(sub)
    sub.add_argument("--rgb", type=Path, required=True, help="features file of the rgb stream")
    sub.add_argument("--flow", type=Path, required=True, help="features file of the flow stream")
    sub.add_argument("--manifest", type=Path, required=True, help="manifest CSV (the labels of a multi-label dataset)")
    sub.add_argument("--threads", type=int, default=CPUS)
    sub.add_argument("--model", type=Path, required=True, help="the trained collaborative model")
    sub.add_argument("--history", type=Path, required=True, help="per-epoch metrics CSV")
    sub.add_argument("--output", type=Path, required=True, help="scores CSV")
    sub.set_defaults(func=cmd_collaborative)

    sub = stages.add_parser("model-choice", help="fusion weights or collaborative model: the better on validation, cross-validated")
    add_settings_options(sub)
    sub.add_argument("--rgb", type=Path, required=True, help="scores CSV of the rgb stream")
    sub.add_argument("--flow", type=Path, required=True, help="scores CSV of the flow stream")
    sub.add_argument("--collaborative", type=Path, required=True, help="the trained collaborative model")
    sub.add_argument("--output", type=Path, required=True, help="model_choice.json")
    sub.set_defaults(func=cmd_model_choice)

    sub = stages.add_parser("fuse", help="learn the fusion weights on validation scores")
    add_settings_options(sub)
    sub.add_argument("--manifest", type=Path, required=True)
    sub.add_argument("--rgb", type=Path, required=True, help="scores CSV of the rgb stream")
    sub.add_argument("--flow", type=Path, required=True, help="scores CSV of the flow stream")
    sub.add_argument("--output", type=Path, required=True, help="fusion weights JSON")
    sub.set_defaults(func=cmd_fuse)

    sub = stages.add_parser("evaluate", help="test-split metrics of each stream and the fusions")
    add_settings_options(sub)
    sub.add_argument("--manifest", type=Path, required=True)
    sub.add_argument("--rgb", type=Path, required=True, help="scores CSV of the rgb stream")
    sub.add_argument("--flow", type=Path, required=True, help="scores CSV of the flow stream")
    sub.add_argument("--fusion", type=Path, required=True, help="fusion weights JSON")
    sub.add_argument("--rejected", type=Path, help="rejected.csv of the dataset (videos left out)")
    sub.add_argument("--collaborative", type=Path, help="scores CSV of the collaborative model")
    sub.add_argument("--model-choice", type=Path, help="model_choice.json: fusion weights or collaborative model, chosen on val")
    sub.add_argument("--output", type=Path, required=True, help="metrics JSON")
    sub.set_defaults(func=cmd_evaluate)

    sub = stages.add_parser("ablation", help="tabulate the ablation variants' test accuracy")
    add_settings_options(sub)
    sub.add_argument("--results", type=Path, required=True, help="the dataset's results folder, e.g. results/demo")
    sub.add_argument("--output", type=Path, required=True, help="ablation CSV")
    sub.set_defaults(func=cmd_ablation)

    sub = stages.add_parser("report", help="write the self-contained HTML report")
    add_settings_options(sub)
    sub.add_argument("--metrics", type=Path, required=True)
    sub.add_argument("--manifest", type=Path, required=True)
    sub.add_argument("--rgb-history", type=Path, required=True)
    sub.add_argument("--flow-history", type=Path, required=True)
    sub.add_argument("--benchmarks-dir", type=Path, nargs="*", default=[],
                     help="folders of Snakemake benchmark files, <dir>/<rule>/<job>.tsv")
    sub.add_argument("--attention-json", type=Path, help="attention.json of the attention stage (with --attention-png)")
    sub.add_argument("--attention-png", type=Path, help="the attention figure of the attention stage")
    sub.add_argument("--ablation", type=Path, nargs="*", default=[], help="the dataset's ablation.csv, if any")
    sub.add_argument("--plot", nargs=2, action="append", default=[], metavar=("NAME", "PNG"),
                     help="also save the report's figure NAME (confusion, confusion_streams, fusion_weights, training) as PNG")
    sub.add_argument("--output", type=Path, required=True, help="the HTML report")
    sub.set_defaults(func=cmd_report)

    sub = stages.add_parser("split-report", help="each split's test results, their mean and standard deviation (split: all)")
    sub.add_argument("--dataset", required=True, help="the dataset's name, for the title")
    sub.add_argument("--splits", type=Path, nargs="+", required=True, help="the splits' results folders, results/<dataset>/split<N>")
    sub.add_argument("--ablation", action="store_true", help="the splits have ablation.csv: add the ablation table")
    sub.add_argument("--table", type=Path, required=True, help="splits.csv: each split's value, mean and std per model and metric")
    sub.add_argument("--output", type=Path, required=True, help="the HTML report")
    sub.set_defaults(func=cmd_split_report)

    sub = stages.add_parser("figures", help="rewrite the README's result tables from results folders (make figures)")
    sub.add_argument("--readme", type=Path, default=Path("README.md"))
    sub.add_argument("--output-dir", type=Path, default=Path("docs/figures"), help="where the figures are recorded as JSON")
    sub.add_argument("--print", action="store_true", help="only print the tables the README would get")
    sub.add_argument("--config", type=Path, default=Path("config.yaml"),
                     help="the config the results were made with (for the run times of their shared preprocessing)")
    sub.add_argument("results", type=Path, nargs="+", help="results folders, e.g. results/demo results/benchmark")
    sub.set_defaults(func=cmd_figures)

    sub = stages.add_parser("attention", help="spatial and temporal attention of a few test videos (JSON and a PNG figure)")
    add_settings_options(sub)
    sub.add_argument("--results", type=Path, required=True, help="a dataset's results folder, e.g. results/demo")
    sub.add_argument("--manifest", type=Path, required=True)
    sub.add_argument("--shards", type=Path, nargs="+", required=True)
    sub.add_argument("--videos", type=int, default=4, help="how many test videos (from different classes)")
    sub.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    sub.add_argument("--threads", type=int, default=CPUS)
    sub.add_argument("--output", type=Path, required=True, help="attention JSON")
    sub.add_argument("--png", type=Path, required=True, help="attention figure")
    sub.set_defaults(func=cmd_attention)

    sub = stages.add_parser("predict", help="top-5 classes of new videos with a trained dataset's models")
    sub.add_argument("results", type=Path, help="a dataset's results folder, e.g. results/demo, or a bundle from export")
    sub.add_argument("videos", type=Path, nargs="+")
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    sub.add_argument("--model", choices=["best", "fusion", "collaborative"], default="best",  # tclsta.export.MODELS
                     help="the learned fusion of the two streams, the collaborative model, or (best) the one "
                          "model_choice.json names (chosen on validation; fusion when absent)")
    sub.add_argument("--threshold", type=float, default=0.5,
                     help="a multi-label model lists the classes whose probability is above this")
    sub.add_argument("--inference-batch", type=int, default=TrainConfig.inference_batch,
                     help="images (test crops x frames) per forward pass; lower it if memory runs out")
    sub.set_defaults(func=cmd_predict)

    sub = stages.add_parser("export", help="write a dataset's models (ONNX), fusion weights, preprocessing spec and a "
                                           "numpy + onnxruntime reference script as one bundle")
    sub.add_argument("results", type=Path, help="a dataset's results folder, e.g. results/demo")
    sub.add_argument("--output", type=Path, required=True, help="the bundle folder to write")
    sub.set_defaults(func=cmd_export)

    sub = stages.add_parser("export-rawframes", help="write a dataset's shards as mmaction2 rawframe folders "
                                                     "(img_/flow_x_/flow_y_ JPEGs, byte for byte) with annotation lists")
    sub.add_argument("--manifest", type=Path, required=True, help="the dataset's manifest, e.g. results/demo/manifest.csv")
    sub.add_argument("--shards", type=Path, nargs="+", required=True, help="its shards, e.g. work/shards/<key>/shard_*.h5 (the folder whose key.json lists the dataset)")
    sub.add_argument("--output", type=Path, required=True, help="the rawframes folder to write")
    sub.set_defaults(func=cmd_export_rawframes)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.func(args) or 0
    except ShardWriteError as exc:
        print(f"tclsta {args.stage}: error: {exc}", file=sys.stderr, flush=True)
        # HDF5 can crash (SIGSEGV) freeing the objects of a file whose writes failed; nothing is left to
        # clean up (the temporary file is already removed), so exit without freeing them.
        logging.shutdown()
        os._exit(2)
    except TclstaError as exc:
        message = str(exc).replace("\n", "; ")
        print(f"tclsta {args.stage}: error: {message}", file=sys.stderr)
        return 2
