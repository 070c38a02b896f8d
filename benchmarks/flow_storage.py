"""Bytes per stored flow pair and round-trip error: the shards' uint8 + gzip against JPEG flow images.

TV-L1 flow (OpenCV, the ``--nscales/--warps/--epsilon`` settings) of consecutive
frames is quantised to uint8 at ``--bound`` and stored in each way below. Two
sources: demo videos (``--videos`` of ``--frames`` frames at ``--size``, re-encoded
as H.264, decoded at short side 256 as the pipeline does; a small patch moves in
part of each clip, the rest is still, as in much of UCF101) and a camera pan over
a noisy texture (flow everywhere; ``flow_backends.py``'s frames, 340x256).

* ``shard``: written with ``ShardWriter`` as the flow stage does (gzip, Fletcher-32,
  one chunk per pair); bytes are HDF5's storage size of the flow datasets;
* ``jpeg qN``: each component as a greyscale JPEG at quality N (what denseflow and
  mmaction2's rawframe layout store, two files per pair), bytes of the JPEG data.

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
from tclsta.data.shards import ShardWriter, VideoRecord
from tclsta.demo import make_demo_dataset
from tclsta.flow import create_opencv_tvl1, dequantise_flow, quantise_flow
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


def shard_bytes(quantised: list[np.ndarray], bound: float, path: Path) -> int:
    """HDF5 storage bytes of the flow datasets, written as the flow stage writes them."""
    with ShardWriter(path, flow_bound=bound) as writer:
        for index, flow in enumerate(quantised):
            height, width = flow.shape[2:]
            writer.add(VideoRecord(f"v{index}", "c", 0, "-", height, width, len(flow) + 1), flow=flow, flow_settings="{}")
    with h5py.File(path, "r") as file:
        return sum(file[f"videos/{group}/flow"].id.get_storage_size() for group in file["videos"])


def jpeg_round_trip(quantised: np.ndarray, quality: int) -> tuple[int, np.ndarray]:
    """(JPEG bytes, decoded uint8) of every component of (n, 2, H, W) uint8 flow."""
    total, decoded = 0, np.empty_like(quantised)
    for index in np.ndindex(quantised.shape[:2]):
        ok, data = cv2.imencode(".jpg", quantised[index], [cv2.IMWRITE_JPEG_QUALITY, quality])
        total += len(data)
        decoded[index] = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    return total, decoded


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
    size = shard_bytes(quantised, args.bound, workdir / f"{source}.h5")
    rows = [dict(common, storage="shard: uint8 + gzip", bytes_per_pair=size / pairs, **error_px(everything, flows, args.bound))]
    for quality in args.quality:
        size, decoded = jpeg_round_trip(everything, quality)
        rows.append(dict(common, storage=f"JPEG q{quality} (2 files per pair)", bytes_per_pair=size / pairs, **error_px(decoded, flows, args.bound)))
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
