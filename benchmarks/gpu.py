"""One GPU check, one table: torch TV-L1 and two-stream training throughput, peak memory.

* flow: the torch TV-L1 (OpenCV's default parameters) on ``--batch`` pairs per call at
  340x256 (camera-pan frames; 320x240 UCF101 frames at ``preprocess.short_side: 256``, as the
  rehearsal stores them) and at 320x240 (stored as decoded), pairs/s after a warm-up call, and its
  mean endpoint difference from OpenCV's ``DualTVL1`` on the same pairs;
* scoring: each stream's test protocol at the recipe's shapes (ResNet-50 at 224, 25 frames x 10
  crops, 101 classes) through :func:`tclsta.inference.video_logits`, ``--inference-batch`` images
  per pass (bf16 autocast on CUDA), videos/s and peak memory;
* training: real steps (forward, the three losses, backward, SGD) of each stream with
  ResNet-50 at 224x224 (``train.train_frames`` frames per clip, ``--clips`` clips per
  batch, bf16 autocast and channels-last on CUDA), fed by ``ShardClipDataset`` through
  a DataLoader from a shard of demo videos made here; ``data share`` is the time the
  step waited for its batch (and decoded it on the device) over the step time;
  ``torch.compile`` off and on with the JPEGs decoded in the DataLoader workers, and off
  with them decoded on the device (``train.decode_device: auto``: one batched nvjpeg call
  per batch, views cut and resized there).

Peak memory is ``torch.cuda.max_memory_allocated`` per row. ``--tiny`` shrinks every
size so that the script runs on a CPU in a minute or two: it proves the script, its
figures say nothing. ``benchmarks/gpu.sh`` runs the full check. Example::

    .venv/bin/python benchmarks/gpu.py --tiny --device cpu
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from tclsta.config import FlowConfig, ModelConfig, dataset_settings, load_config, parse_dataset
from tclsta.data.dataset import clip_loader, decode_clips, stream_channels
from tclsta.flow import create_tvl1, create_tvl1_batch
from tclsta.inference import build_model, split_dataset, video_logits
from tclsta.train import Runtime, run_epoch, train_clip_spec, training_stages

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flow_backends import pan_pairs  # noqa: E402  (the sibling benchmarks' inputs)
from train import make_shard  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: proves the script on a CPU, measures nothing useful")
    parser.add_argument("--batch", type=int, nargs="+", help="flow pairs per call (default 32 64 128; tiny: 2 4)")
    parser.add_argument("--clips", type=int, help="training clips per batch (default 16; tiny: 2)")
    parser.add_argument("--steps", type=int, help="timed training steps per row (default 20; tiny: 2)")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers")
    parser.add_argument("--inference-batch", type=int, nargs="+", default=[100, 250], help="scoring: images per pass")
    parser.add_argument("--videos", type=int, help="scoring: videos per row (default 8; tiny: 1)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.batch = args.batch or ([2, 4] if args.tiny else [32, 64, 128])
    args.clips = args.clips or (2 if args.tiny else 16)
    args.steps = args.steps or (2 if args.tiny else 20)
    args.videos = args.videos or (1 if args.tiny else 8)
    return args


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def peak_memory_gib(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None


def flow_rows(args: argparse.Namespace) -> list[dict]:
    """Torch TV-L1 pairs/s per batch size and frame size, and its endpoint difference from OpenCV on the same pairs."""
    sizes = [(64, 48)] if args.tiny else [(340, 256), (320, 240)]
    return [row for width, height in sizes for row in flow_size_rows(args, width, height)]


def flow_size_rows(args: argparse.Namespace, width: int, height: int) -> list[dict]:
    config = FlowConfig()
    reference_pairs = 2 if args.tiny else 8
    previous, following = pan_pairs(height, width, max(args.batch))
    opencv = create_tvl1(dataclasses.replace(config, backend="opencv"))
    reference = np.stack([opencv(a, b) for a, b in zip(previous[:reference_pairs], following[:reference_pairs])])
    torch_flow = create_tvl1_batch(config, args.device)
    torch_flow(previous[:2], following[:2])  # warm-up: CUDA context, kernels
    rows = []
    for batch in args.batch:
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        synchronize(args.device)
        start = time.perf_counter()
        flow = torch_flow(previous[:batch], following[:batch])
        synchronize(args.device)
        seconds = time.perf_counter() - start
        epe = float(np.linalg.norm(flow[:reference_pairs] - reference, axis=-1).mean())
        rows.append(dict(what=f"torch TV-L1 {width}x{height}, batch_pairs {batch}", rate=batch / seconds, unit="pairs/s",
                         detail=f"endpoint difference from OpenCV {epe:.4f} px", peak_gib=peak_memory_gib(args.device)))
    return rows


def scoring_rows(args: argparse.Namespace) -> list[dict]:
    """Videos/s of each stream's test protocol at the recipe's shapes, chunked, with peak memory."""
    frames, crops, size = (4, 10, 56) if args.tiny else (25, 10, 224)
    rows = []
    for modality, images in itertools.product(("rgb", "flow"), args.inference_batch):
        model_config = dataclasses.replace(ModelConfig(), backbone="small" if args.tiny else "resnet50")
        model = build_model(model_config, modality, 101).to(args.device).eval()
        if args.device == "cuda":
            model = model.to(memory_format=torch.channels_last)
        channels = stream_channels(modality, model_config.flow_stack)
        clips = torch.randint(0, 256, (1, crops, frames, channels, size, size), dtype=torch.uint8)  # one video's test crops
        video_logits(model, clips, torch.device(args.device), images)  # warm-up
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        synchronize(args.device)
        start = time.perf_counter()
        for _ in range(args.videos):
            video_logits(model, clips, torch.device(args.device), images)
        synchronize(args.device)
        seconds = time.perf_counter() - start
        rows.append(dict(what=f"scoring {modality}, {model_config.backbone} {size}x{size}, {frames} frames x {crops} crops",
                         rate=args.videos / seconds, unit="videos/s", detail=f"inference_batch {images} images per pass",
                         peak_gib=peak_memory_gib(args.device)))
    return rows


def training_rows(args: argparse.Namespace, workdir: Path) -> list[dict]:
    """Clips/s of training steps per stream, torch.compile off and on, JPEGs decoded in the workers or on the
    device, with the loader's share of step time."""
    settings = dataset_settings(load_config(REPO / "config.yaml"), "demo")
    size = dict(width=64, height=48, num_frames=12) if args.tiny else dict(width=340, height=256, num_frames=32)
    settings["demo"] = {**settings["demo"], **size}
    settings["preprocess"] = {**settings["preprocess"], "short_side": None if args.tiny else 256}
    settings["model"] = {**settings["model"], "backbone": "small" if args.tiny else "resnet50", "flow_stack": 5,
                         "pretrained": None}
    crop = [40, 56] if args.tiny else [224, 224]
    settings["train"] = {**settings["train"], "crop_size": crop, "batch_size": args.clips, "train_frames": 3 if args.tiny else 10,
                         "amp": True, "channels_last": True, "device": args.device, "grad_clip": 20.0}
    dataset = parse_dataset(settings)
    shard, manifest = make_shard(workdir, 16 if args.tiny else 64, dataset)
    runtime = Runtime(torch.device(args.device))
    stage = training_stages(dataset.train)[0]
    rows = []
    runs = [("workers", False), ("workers", True), ("device", False)]  # (JPEGs decoded on, torch.compile)
    for modality, (decode, compiled) in itertools.product(("rgb", "flow"), runs):
        spec = train_clip_spec(modality, dataset.model.flow_stack, dataset.train)
        data = split_dataset(manifest, ["train", "val", "test"], [shard], spec, 0, encoded=decode == "device")
        loader = clip_loader(data, batch_size=args.clips, shuffle=True, drop_last=True, num_workers=args.workers,
                             persistent_workers=True, pin_memory=args.device == "cuda")
        torch.manual_seed(0)
        model = build_model(dataset.model, modality, 101).to(runtime.device)
        if args.device == "cuda":
            model = model.to(memory_format=torch.channels_last)
        network = torch.compile(model) if compiled else model
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        scaler = torch.amp.GradScaler(enabled=False)  # bf16 needs no loss scaling
        batches = itertools.chain.from_iterable(itertools.repeat(loader))
        run_epoch(network, itertools.islice(batches, 2), runtime, stage, dataset.train, optimizer, scaler)  # warm-up, compiles
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        synchronize(args.device)
        start = time.perf_counter()
        result = run_epoch(network, itertools.islice(batches, args.steps), runtime, stage, dataset.train, optimizer, scaler)
        synchronize(args.device)
        seconds = time.perf_counter() - start
        backbone = dataset.model.backbone
        detail = f"data share {result['data_seconds'] / seconds:.0%}, {args.clips} clips x {spec.num_frames} frames per step"
        if decode == "device":  # the device's decoder (nvjpeg on CUDA) against the workers' (libjpeg-turbo), same views
            clips = [data.encoded_clip(i) for i in range(args.clips)]
            ours, workers = (torch.stack(decode_clips(clips, device)).cpu().int() for device in (args.device, "cpu"))
            detail += f", {int((ours - workers).abs().max())} grey levels at most from the CPU decoder's"
        rows.append(dict(what=f"training {modality}, {backbone} {crop[0]}x{crop[1]}, compile {'on' if compiled else 'off'}, "
                              f"JPEGs decoded {'in the workers' if decode == 'workers' else 'on the device'}",
                         rate=args.steps * args.clips / seconds, unit="clips/s", detail=detail, peak_gib=peak_memory_gib(args.device)))
    return rows


def main() -> None:
    args = parse_args()
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = flow_rows(args) + scoring_rows(args) + training_rows(args, Path(tmp))
    print(f"{name}; torch {torch.__version__}, OpenCV {cv2.__version__}" + ("; TINY sizes: not a measurement" if args.tiny else ""))
    print("\n| what | throughput | detail | peak GPU memory |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        peak = "-" if row["peak_gib"] is None else f"{row['peak_gib']:.1f} GiB"
        print(f"| {row['what']} | {row['rate']:.1f} {row['unit']} | {row['detail']} | {peak} |")
    print(f"\nwhole check {time.perf_counter() - start:.0f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"device": name, "tiny": args.tiny, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
