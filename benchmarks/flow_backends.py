"""Pairs per second of the torch TV-L1 backend against OpenCV's CPU TV-L1, on the same frames, in one run.

For each ``--size``: OpenCV's DualTVL1 ``calc`` with one thread (the pipeline runs
one such process per core), the torch backend on the CPU with one thread and
with all of torch's threads (the whole batch in one call), and, where torch sees
a GPU, the torch backend on CUDA with ``--batch`` pairs per call (the pairs are
repeated to fill a batch). Every run uses the same TV-L1 parameters (OpenCV's
defaults, as in ``config.yaml``); ``epe`` is the mean endpoint distance of the
torch flow from OpenCV's on the same pairs.

Frames (``--frames``): ``pan`` (default), a camera panning, turning and zooming
over a multi-scale random texture with sensor noise, which costs OpenCV about as
many iterations as real video; or ``demo``, the project's demo videos generated
at the size (mostly still backgrounds, so TV-L1 converges in few iterations).
Example::

    .venv/bin/python benchmarks/flow_backends.py --size 340x256 --size 170x128 --pairs 8
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from tclsta.config import FlowConfig
from tclsta.flow import create_tvl1, create_tvl1_batch


def pan_pairs(height: int, width: int, pairs: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) uint8 previous and next frames of a camera panning (1.3, 0.7 px/frame), turning and zooming over a noisy texture."""
    rng = np.random.default_rng(seed)
    texture = np.zeros((2 * height, 2 * width), np.float32)
    for sigma in (1, 2, 4, 8, 16):
        texture += sigma * cv2.GaussianBlur(rng.standard_normal(texture.shape).astype(np.float32), (0, 0), sigma)
    texture = 128 + 60 * texture / texture.std()
    frames = []
    for t in range(pairs + 1):
        matrix = cv2.getRotationMatrix2D((width, height), 0.6 * t, 1 + 0.01 * t)
        matrix[:, 2] += (-width / 2 + 1.3 * t, -height / 2 + 0.7 * t)
        frame = cv2.warpAffine(texture, matrix, (width, height), flags=cv2.INTER_CUBIC) + rng.normal(0, 2, (height, width))
        frames.append(np.clip(frame, 0, 255).astype(np.uint8))
    return np.stack(frames[:-1]), np.stack(frames[1:])


def demo_pairs(height: int, width: int, pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) uint8 previous and next frames of consecutive pairs of the project's demo videos made at this size."""
    from tclsta.demo import make_demo_dataset
    from tclsta.video import decode_frames

    with tempfile.TemporaryDirectory() as root:
        make_demo_dataset(Path(root), classes_per_kind=1, groups=2, clips_per_group=1, num_frames=16, width=width, height=height)
        videos = [np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in decode_frames(path)])
                  for path in sorted(Path(root, "videos").rglob("*.avi"))]
    prev = np.concatenate([video[:-1] for video in videos])
    nxt = np.concatenate([video[1:] for video in videos])
    index = np.linspace(0, len(prev) - 1, pairs).astype(int)  # spread over the videos and their action windows
    return prev[index], nxt[index]


def timed(run, *args) -> tuple[float, np.ndarray]:
    """Seconds of ``run(*args)`` (GPU work included) and its result."""
    start = time.perf_counter()
    result = run(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", action="append", help="WxH, repeatable (default: 340x256 and 170x128)")
    parser.add_argument("--pairs", type=int, default=8, help="frame pairs per CPU measurement")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda", "none"], default="auto",
                        help="torch backend on the CPU, on CUDA, auto (the CPU, and CUDA when torch sees a GPU), or none (OpenCV only)")
    parser.add_argument("--batch", type=int, action="append", help="pairs per call on CUDA, repeatable (default: 32, 64, 128, 256)")
    parser.add_argument("--frames", choices=["pan", "demo"], default="pan")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in (args.size or ["340x256", "170x128"])]
    run_cpu = args.device in ("auto", "cpu")
    run_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    config = FlowConfig()
    threads = torch.get_num_threads()
    print(f"TV-L1 with OpenCV's default parameters; {args.frames} frames; torch {torch.__version__}, OpenCV {cv2.__version__}; "
          f"{threads} torch CPU threads" + (f"; GPU {torch.cuda.get_device_name()}" if run_cuda else ""))
    print(f"{'size':>7}  {'backend':<24} {'pairs':>5} {'seconds':>8} {'pairs/s':>8} {'vs OpenCV':>9} {'epe':>7}")

    for width, height in sizes:
        prev, nxt = (pan_pairs if args.frames == "pan" else demo_pairs)(height, width, args.pairs)
        cv2.setNumThreads(1)
        opencv = create_tvl1(FlowConfig(backend="opencv"))
        cpu_start = time.process_time()
        seconds, reference = timed(lambda: np.stack([opencv(a, b) for a, b in zip(prev, nxt)]))
        print(f"{width:>3}x{height:<3}  opencv cpu, 1 thread: {len(prev) / (time.process_time() - cpu_start):.2f} pairs per CPU-second "
              "(does not depend on other load)")
        cv2.setNumThreads(-1)
        opencv_speed = len(prev) / seconds
        rows = [("opencv cpu, 1 thread", len(prev), seconds, reference)]
        if run_cpu:
            cpu_flow = create_tvl1_batch(config, "cpu")
            for n in sorted({1, threads}):
                torch.set_num_threads(n)
                rows.append((f"torch cpu, {n} thread(s)", len(prev), *timed(cpu_flow, prev, nxt)))
            torch.set_num_threads(threads)
        if run_cuda:
            cuda_flow = create_tvl1_batch(config, "cuda")
            timed(cuda_flow, prev[:2], nxt[:2])  # CUDA context and kernel loading: not timed
            for batch in args.batch or [32, 64, 128, 256]:
                index = np.arange(batch) % len(prev)  # the pairs repeated to fill the batch
                seconds, flow = timed(cuda_flow, prev[index], nxt[index])
                rows.append((f"torch cuda, batch {batch}", batch, seconds, flow[: len(prev)]))
        for label, pairs, seconds, flow in rows:
            epe = np.linalg.norm(flow - reference[: len(flow)], axis=-1).mean()
            print(f"{width:>3}x{height:<3}  {label:<24} {pairs:>5} {seconds:8.2f} {pairs / seconds:8.2f} "
                  f"{pairs / seconds / opencv_speed:8.2f}x {epe:7.4f}")


if __name__ == "__main__":
    main()
