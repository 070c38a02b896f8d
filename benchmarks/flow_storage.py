"""Bytes per stored flow pair and round-trip error: the shards' JPEG flow against their former uint8 + gzip.

TV-L1 flow (OpenCV, the ``--nscales/--warps/--epsilon`` settings) of consecutive
frames is quantised to uint8 at ``--bound`` and stored in each way below. Two
sources: demo videos (``--videos`` of ``--frames`` frames at ``--size``, re-encoded
as H.264, decoded at short side 256 as the pipeline does; a small patch moves in
part of each clip, the rest is still, as in much of UCF101) and a camera pan over
a noisy texture (flow everywhere; ``flow_backends.py``'s frames, 340x256).

* ``shard: JPEG qN``: written as the flow stage writes it (``encode_flow`` at
  ``flow.jpeg_quality`` N, ``ShardWriter``; shard format 3), read back with
  ``ShardReader.flow_jpegs`` and decoded as the loader decodes it; bytes are the
  whole flow-only shard file (HDF5 metadata, settings and CRC-32s included);
* ``JPEG qN files``: the same JPEGs as files (mmaction2's and denseflow's rawframe
  layout, two files per pair), bytes of the JPEG data;
* ``shard v2 (before): uint8 + gzip``: the layout of shard format 2, written with
  h5py as it was (gzip level 1, Fletcher-32, one chunk per pair); bytes are HDF5's
  storage size of the flow datasets.

Errors are in pixels against the float flow clipped to the bound: mean and 99th
percentile of the absolute difference per component. Example::

    .venv/bin/python benchmarks/flow_storage.py --json benchmarks/out/flow_storage.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import cv2
import h5py
import numpy as np

from tclsta.config import FlowConfig
from tclsta.data.dataset import decode_flow_jpegs
from tclsta.data.shards import ShardReader, ShardWriter, VideoRecord
from tclsta.demo import make_demo_dataset
from tclsta.flow import create_opencv_tvl1, dequantise_flow, encode_flow, quantise_flow
from tclsta.video import decode_frames

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flow_backends import pan_pairs  # noqa: E402  (the sibling benchmarks' inputs)
from preprocess import reencode_h264  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", default="320x240", help="demo video WxH before decoding at short side 256")
    parser.add_argument("--bound", type=float, default=20.0)
    parser.add_argument("--quality", type=int, nargs="+", default=[95, 90])
    parser.add_argument("--nscales", type=int, default=3)
    parser.add_argument("--warps", type=int, default=3)
    parser.add_argument("--epsilon", type=float, default=0.05)
    parser.add_argument("--json", type=Path)
    return parser.parse_args()


def pan_flows(args: argparse.Namespace) -> list[np.ndarray]:
    """Float flow (N, H, W, 2) of ``--frames`` - 1 pan pairs at 340x256, as one sequence."""
    tvl1 = create_opencv_tvl1(FlowConfig(nscales=args.nscales, warps=args.warps, epsilon=args.epsilon))
    previous, following = pan_pairs(256, 340, args.frames - 1)
    return [np.stack([tvl1.calc(a, b, None) for a, b in zip(previous, following)])]


def video_flows(args: argparse.Namespace, workdir: Path) -> list[np.ndarray]:
    """Float flow (T-1, H, W, 2) of each video."""
    width, height = (int(v) for v in args.size.split("x"))
    make_demo_dataset(workdir, classes_per_kind=max(1, -(-args.videos // 4)), groups=2, clips_per_group=1,
                      num_frames=args.frames, width=width, height=height)
    reencode_h264(workdir / "videos", workdir / "splits")
    tvl1 = create_opencv_tvl1(FlowConfig(nscales=args.nscales, warps=args.warps, epsilon=args.epsilon))
    flows = []
    for path in sorted((workdir / "videos").rglob("*.mp4"))[: args.videos]:
        grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in decode_frames(path, 256)]
        flows.append(np.stack([tvl1.calc(a, b, None) for a, b in zip(grey[:-1], grey[1:])]))
    return flows


def jpeg_shard(quantised: list[np.ndarray], bound: float, quality: int, path: Path) -> tuple[int, int, np.ndarray]:
    """(file bytes, JPEG bytes, decoded (N, 2, H, W) uint8) of a flow-only shard written as the flow stage writes it."""
    with ShardWriter(path, flow_bound=bound) as writer:
        for index, flow in enumerate(quantised):
            height, width = flow.shape[2:]
            writer.add(VideoRecord(f"v{index}", "c", 0, "-", height, width, len(flow) + 1), flow=encode_flow(flow, quality),
                       flow_settings=json.dumps({"jpeg_quality": quality}))
    with ShardReader(path) as reader:
        stored = [reader.flow_jpegs(video_id) for video_id in reader.video_ids]
    decoded = np.concatenate([decode_flow_jpegs(jpegs) for jpegs in stored])
    return path.stat().st_size, sum(len(jpeg) for jpegs in stored for jpeg in jpegs), decoded


def gzip_bytes(quantised: list[np.ndarray], path: Path) -> int:
    """HDF5 storage bytes of the flow as shard format 2 stored it: uint8, gzip level 1, Fletcher-32, a chunk per pair."""
    with h5py.File(path, "w", libver="latest") as file:
        for index, flow in enumerate(quantised):
            file.create_dataset(f"v{index}", data=flow, chunks=(1, *flow.shape[1:]), compression="gzip", compression_opts=1,
                                fletcher32=True)
    with h5py.File(path, "r") as file:
        return sum(file[name].id.get_storage_size() for name in file)


def error_px(stored: np.ndarray, flows: list[np.ndarray], bound: float) -> dict[str, float]:
    """Mean and 99th percentile |stored - float flow| in pixels (stored: (N, 2, H, W) uint8 of all videos)."""
    truth = np.concatenate([np.moveaxis(np.clip(f, -bound, bound), -1, -3) for f in flows])  # (N, 2, H, W)
    difference = np.abs(dequantise_flow(stored, bound) - truth)
    return {"mean_error_px": float(difference.mean()), "p99_error_px": float(np.percentile(difference, 99))}


def storage_rows(source: str, flows: list[np.ndarray], args: argparse.Namespace, workdir: Path) -> list[dict]:
    """One row per way of storing ``flows``: bytes per pair and round-trip error."""
    quantised = [quantise_flow(f, args.bound) for f in flows]
    pairs = sum(len(q) for q in quantised)
    everything = np.concatenate(quantised)  # (N, 2, H, W)
    height, width = everything.shape[2:]
    magnitude = float(np.mean(np.concatenate([np.hypot(f[..., 0], f[..., 1]).ravel() for f in flows])))
    common = dict(source=f"{source}, {pairs} pairs at {width}x{height}, mean flow {magnitude:.2f} px")
    rows = [dict(common, storage="shard v2 (before): uint8 + gzip", bytes_per_pair=gzip_bytes(quantised, workdir / f"{source}.v2.h5") / pairs,
                 **error_px(everything, flows, args.bound))]
    for quality in args.quality:
        file_bytes, jpeg_bytes, decoded = jpeg_shard(quantised, args.bound, quality, workdir / f"{source}.q{quality}.h5")
        errors = error_px(decoded, flows, args.bound)
        rows.append(dict(common, storage=f"shard: JPEG q{quality}", bytes_per_pair=file_bytes / pairs, **errors))
        rows.append(dict(common, storage=f"JPEG q{quality} files (2 per pair)", bytes_per_pair=jpeg_bytes / pairs, **errors))
    return rows


def main() -> None:
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = storage_rows("demo videos (H.264)", video_flows(args, Path(tmp)), args, Path(tmp))
        rows += storage_rows("camera pan", pan_flows(args), args, Path(tmp))
    print(f"bound {args.bound:g} px; errors against the float TV-L1 flow clipped to the bound\n")
    print("| flow of | storage | bytes per pair | mean error (px) | 99th percentile error (px) |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['source']} | {row['storage']} | {row['bytes_per_pair']:.0f} | {row['mean_error_px']:.3f} | {row['p99_error_px']:.3f} |")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
