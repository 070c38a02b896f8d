"""UCF101 split 1's time and disk, projected from measured per-unit costs; prints markdown tables.

Per-unit costs come from the benchmarks' JSON files and from the flow rate given:

* extraction: core-seconds per frame = ``--preprocess`` JSON's extraction frames/s
  (``benchmarks/preprocess.py``, H.264 input) times its ``--workers`` (cores used);
* flow: core-seconds per pair = 1 / ``--flow-pairs-per-core`` (OpenCV TV-L1, default
  parameters, one thread: ``benchmarks/flow_backends.py``);
* disk: shard bytes per frame (``--preprocess``) and per flow pair (``--flow-storage``,
  ``benchmarks/flow_storage.py``, its camera-pan rows: flow everywhere; the shard at
  the default ``flow.jpeg_quality``), against mmaction2's rawframe layout: one JPEG
  file per frame and two per flow pair (JPEG-folder bytes per frame, JPEG q95 bytes
  per pair);
* GPU flow, training and scoring: ``--gpu`` JSON (``benchmarks/gpu.sh``, not its tiny
  mode); without it those cells say "not measured".

CPU stages are assumed to scale with cores (videos and shards are independent jobs);
the machines are this one (2 cores), a 16-core node, one GPU (with a 16-core host) and
8 SLURM nodes of 16 cores and one GPU each. Example::

    .venv/bin/python benchmarks/project_ucf101.py --preprocess benchmarks/out/preprocess_h264.json \\
        --flow-storage benchmarks/out/flow_storage.json --flow-pairs-per-core 0.89
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from tclsta.config import FlowConfig

VIDEOS = 13_320
FRAMES = 2_500_000  # about 2.5 million frames in UCF101
PAIRS = FRAMES - VIDEOS
SHARDS = 16


@dataclass(frozen=True)
class Machine:
    name: str
    cores: int
    gpus: int


MACHINES = [Machine("this machine (2 cores)", 2, 0), Machine("16-core node", 16, 0), Machine("one GPU (16-core host)", 16, 1),
            Machine("8 SLURM nodes (16 cores + 1 GPU each)", 128, 8)]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preprocess", type=Path, required=True, help="benchmarks/preprocess.py --json output")
    parser.add_argument("--flow-storage", type=Path, required=True, help="benchmarks/flow_storage.py --json output")
    parser.add_argument("--flow-pairs-per-core", type=float, required=True,
                        help="OpenCV TV-L1 pairs per CPU-second, default parameters (flow_backends.py --device none)")
    parser.add_argument("--gpu", type=Path, help="benchmarks/gpu.sh output (benchmarks/out/gpu.json), not tiny")
    return parser.parse_args()


def row(rows: list[dict], prefix: str) -> dict:
    return next(r for r in rows if r["stage"].startswith(prefix))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "not measured"
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def main() -> None:
    args = parse_args()
    preprocess = json.loads(args.preprocess.read_text())
    storage = json.loads(args.flow_storage.read_text())["rows"]
    extraction = row(preprocess["rows"], "extraction (frames/s) vs bare")
    extract_core_s = preprocess["settings"]["workers"] / extraction["ours"]
    bytes_frame = row(preprocess["rows"], "bytes per frame")
    pan = [r for r in storage if r["source"].startswith("camera pan")]
    quality = FlowConfig().jpeg_quality
    shard_pair = next(r for r in pan if r["storage"] == f"shard: JPEG q{quality}")["bytes_per_pair"]
    jpeg_pair = next(r for r in pan if r["storage"].startswith("JPEG q95 files"))["bytes_per_pair"]
    flow_core_s = 1.0 / args.flow_pairs_per_core
    gpu = json.loads(args.gpu.read_text()) if args.gpu else None
    if gpu is not None and gpu.get("tiny"):
        raise SystemExit(f"{args.gpu} comes from gpu.sh --tiny: its figures are not measurements")
    gpu_flow = max((r["rate"] for r in gpu["rows"] if r["unit"] == "pairs/s"), default=None) if gpu else None

    print(f"UCF101 split 1: {VIDEOS:,} videos, about {FRAMES / 1e6:.1f} million frames, {PAIRS:,} flow pairs, {SHARDS} shards.\n")
    print(f"Per-unit costs: extraction {1000 * extract_core_s:.2f} core-ms per frame ({args.preprocess}); OpenCV TV-L1 "
          f"{flow_core_s:.2f} core-s per pair; shards {bytes_frame['ours']:.0f} B per frame, {shard_pair:.0f} B per flow pair"
          + (f"; torch TV-L1 on the GPU {gpu_flow:.0f} pairs/s ({gpu['device']})" if gpu_flow else "; no GPU figure") + ".\n")
    print("| machine | extraction | flow | training, scoring |")
    print("| --- | --- | --- | --- |")
    for machine in MACHINES:
        opencv = f"OpenCV on {machine.cores} cores: {duration(PAIRS * flow_core_s / machine.cores)}"
        if machine.gpus:
            gpu_time = duration(PAIRS / gpu_flow / machine.gpus if gpu_flow else None)
            opencv = f"torch TV-L1 on the GPU: {gpu_time}; {opencv}"
        print(f"| {machine.name} | {duration(FRAMES * extract_core_s / machine.cores)} | {opencv} | not measured |")
    print("\n| layout | disk | files |")
    print("| --- | --- | --- |")
    shards_bytes = FRAMES * bytes_frame["ours"] + PAIRS * shard_pair
    rawframe_bytes = FRAMES * bytes_frame["reference"] + PAIRS * jpeg_pair
    print(f"| TCLSTA shards (JPEG frames, JPEG q{quality} flow components) | {shards_bytes / 1e9:.0f} GB | {SHARDS} |")
    print(f"| mmaction2 rawframes (JPEG per frame, JPEG q95 per flow component) | {rawframe_bytes / 1e9:.0f} GB | {FRAMES + 2 * PAIRS:,} |")


if __name__ == "__main__":
    main()
