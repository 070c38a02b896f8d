"""Throughput of frame extraction, TV-L1 flow and clip loading against bare references.

Everything runs on one machine in one run, on the same videos, so the ratios
compare like with like:

1. extraction: ``tclsta.preprocess.extract_shard`` (decode, resize, JPEG, HDF5;
   ``--workers`` videos at once) against a bare
   ``ffmpeg -i VIDEO [-vf scale=W:H] -f null -`` of each video in turn;
2. flow: ``tclsta.preprocess.flow_shard`` on ``--workers`` processes against one
   process calling OpenCV's DualTVL1 ``calc`` on the same greyscale frames with
   ``cv2.setNumThreads(1)``, per core, with the same TV-L1 parameters;
3. loading: ``ShardClipDataset`` through a torch DataLoader (uint8 clips,
   normalised by ``model_input`` in this process, as on the training device)
   against a minimal dataset reading the same frames from a folder of JPEG files
   (one per frame) and normalising them in its workers; both hand this process
   the same normalised float32 batches.

A ratio is the reference's throughput over ours (how many times slower we are);
``goal`` is the bound the pipeline aims for. Wall times are medians of
``--repeat`` runs taken in turns; CPU times (this process and its finished
children) are reported too, since they do not depend on what else the machine
runs. By default the inputs are the project's demo dataset, generated at
320x240 into a temporary folder and re-encoded as H.264 (libx264) MP4 with an
AAC audio track, as most users' videos are (``--codec mpeg4`` keeps the demo's
MPEG-4 AVI files, which decode faster). Example::

    .venv/bin/python benchmarks/preprocess.py --json benchmarks/out/preprocess.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pandas as pd

from tclsta.config import FlowConfig, PreprocessConfig
from tclsta.data.manifest import build_ucf_manifest
from tclsta.demo import make_demo_dataset
from tclsta.flow import create_opencv_tvl1
from tclsta.preprocess import extract_shard, flow_shard
from tclsta.video import ffmpeg_binaries, scaled_size, video_jpegs

# torch is imported only where the loaders need it: the processes that flow_shard and the
# DataLoader spawn re-import this script, and torch would add seconds to flow_shard's start-up.

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
SHARD = 0  # the manifest is built with one shard


@dataclass
class Row:
    """One line of the results table; throughputs in ``unit`` (higher is better)."""

    stage: str
    unit: str
    ours: float | None
    reference: float | None
    goal: float | None = None  # the largest acceptable reference/ours ratio
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.ours is None or self.reference is None:
            return None
        return self.reference / self.ours


@dataclass(frozen=True)
class Timing:
    wall: float  # seconds, median
    cpu: float  # CPU seconds of this process and its finished children, median


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    inputs = parser.add_argument_group("inputs")
    inputs.add_argument("--videos-dir", type=Path, help="existing UCF101-layout video root (default: generate the demo dataset)")
    inputs.add_argument("--splits-dir", type=Path, help="its classInd/trainlist/testlist folder (with --videos-dir)")
    inputs.add_argument("--width", type=int, default=320, help="demo video width (even)")
    inputs.add_argument("--height", type=int, default=240, help="demo video height (even)")
    inputs.add_argument("--frames", type=int, default=32, help="demo video length in frames")
    inputs.add_argument("--codec", choices=("h264", "mpeg4"), default="h264", help="demo videos: H.264 MP4 with audio, or MPEG-4 AVI")
    inputs.add_argument("--videos", type=int, default=64, help="use at most N videos (0: all)")
    inputs.add_argument("--flow-videos", type=int, default=8, help="of those, how many the flow stage runs on (TV-L1 is slow)")
    inputs.add_argument("--workdir", type=Path, help="keep the generated files here, emptied first (default: a temporary folder)")
    preprocess = parser.add_argument_group("preprocess (preprocess.* in config.yaml)")
    preprocess.add_argument("--short-side", type=int, default=256, help="resize to this short side; 0 keeps the size")
    preprocess.add_argument("--jpeg-quality", type=int, default=90)
    flow = parser.add_argument_group("flow (flow.* in config.yaml; fast values keep the run short)")
    flow.add_argument("--nscales", type=int, default=3)
    flow.add_argument("--warps", type=int, default=3)
    flow.add_argument("--epsilon", type=float, default=0.05)
    loader = parser.add_argument_group("loader (train.* and model.* in config.yaml)")
    loader.add_argument("--clip-frames", type=int, default=10, help="T, frames per clip (train.train_frames)")
    loader.add_argument("--crop", type=int, nargs=2, default=(224, 224), metavar=("H", "W"), help="train.crop_size")
    loader.add_argument("--batch-size", type=int, default=8)
    loader.add_argument("--flow-stack", type=int, default=5, help="L, flow pairs per motion-stream frame (model.flow_stack)")
    loader.add_argument("--loader-epochs", type=int, default=5,
                        help="epochs per timed loader run: one epoch of a few dozen clips is too short to time steadily")
    run = parser.add_argument_group("run")
    run.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="flow processes and DataLoader workers")
    run.add_argument("--repeat", type=int, default=2, help="timed runs of each measurement (the median is reported)")
    run.add_argument("--skip-flow", action="store_true", help="measure extraction and the RGB loader only")
    run.add_argument("--json", type=Path, help="also write the results, settings and machine here")
    args = parser.parse_args()
    if args.videos_dir is not None and args.splits_dir is None:
        parser.error("--videos-dir needs --splits-dir")
    if args.width % 2 or args.height % 2:
        parser.error("the demo generator needs an even --width and --height")
    if min(args.repeat, args.workers, args.flow_videos, args.loader_epochs) < 1:
        parser.error("--repeat, --workers, --flow-videos and --loader-epochs must be at least 1")
    return args


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (ffmpeg, ffprobe, flow workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def measure(actions: dict[str, Callable[[], object]], repeat: int) -> dict[str, Timing]:
    """Median wall and CPU time of each action; the actions take turns so that drift hits them alike."""
    wall: dict[str, list[float]] = {name: [] for name in actions}
    cpu: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(repeat):
        for name, action in actions.items():
            start_wall, start_cpu = time.perf_counter(), cpu_seconds()
            action()
            wall[name].append(time.perf_counter() - start_wall)
            cpu[name].append(cpu_seconds() - start_cpu)
    return {name: Timing(statistics.median(wall[name]), statistics.median(cpu[name])) for name in actions}


def load_manifest(args: argparse.Namespace, workdir: Path) -> pd.DataFrame:
    """The benchmark's videos: the demo dataset (generated here) or the given one, capped at ``--videos``."""
    if args.videos_dir is None:
        root = workdir / "demo"
        start = time.perf_counter()
        clips_per_group = max(1, -(-(args.videos or 128) // 32))  # 8 classes x 4 groups
        make_demo_dataset(root, classes_per_kind=4, groups=4, clips_per_group=clips_per_group, num_frames=args.frames,
                          width=args.width, height=args.height)
        videos_dir, splits_dir = root / "videos", root / "splits"
        if args.codec == "h264":
            reencode_h264(videos_dir, splits_dir)
        print(f"generated the demo dataset ({args.width}x{args.height}, {args.codec}) in {time.perf_counter() - start:.1f} s",
              file=sys.stderr)
    else:
        videos_dir, splits_dir = args.videos_dir, args.splits_dir
    manifest = build_ucf_manifest(videos_dir, splits_dir, split=1, val_fraction=0.3, num_shards=1, seed=0)
    if args.videos and args.videos < len(manifest):
        manifest = manifest.sample(n=args.videos, random_state=0)
    return manifest.sort_values("video_id", ignore_index=True)


def reencode_h264(videos_dir: Path, splits_dir: Path) -> None:
    """Each AVI as an H.264 (libx264, yuv420p) MP4 with a 440 Hz AAC track; the split lists follow the new names."""
    for avi in sorted(videos_dir.rglob("*.avi")):
        subprocess.run(
            [ffmpeg_binaries()[0], "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(avi), "-f", "lavfi",
             "-i", "sine=frequency=440", "-c:v", "libx264", "-preset", "medium", "-crf", "23", "-pix_fmt", "yuv420p",
             "-c:a", "aac", "-shortest", str(avi.with_suffix(".mp4"))],
            check=True,
        )
        avi.unlink()
    for listing in splits_dir.glob("*list*.txt"):
        listing.write_text(listing.read_text().replace(".avi", ".mp4"))


def output_size(path: str, short_side: int | None) -> tuple[int, int]:
    """(width, height) after resizing the short side to ``short_side``, both even, as the extraction stage does."""
    capture = cv2.VideoCapture(path)
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    capture.release()
    if not width or not height:
        raise RuntimeError(f"cannot read the frame size of {path}")
    return scaled_size(width, height, short_side)


def ffmpeg_command(path: str, size: tuple[int, int], resize: bool, output: list[str]) -> list[str]:
    scale = ["-vf", f"scale={size[0]}:{size[1]}"] if resize else []
    return [ffmpeg_binaries()[0], "-nostdin", "-hide_banner", "-loglevel", "error", "-i", path, *scale, *output]


def bare_decode(path: str, size: tuple[int, int], resize: bool) -> None:
    subprocess.run(ffmpeg_command(path, size, resize, ["-f", "null", "-"]), check=True)


def decode_bgr(path: str, size: tuple[int, int], resize: bool) -> np.ndarray:
    """(T, H, W, 3) uint8 BGR frames, decoded (and resized) by ffmpeg."""
    command = ffmpeg_command(path, size, resize, ["-f", "rawvideo", "-pix_fmt", "bgr24", "-"])
    raw = subprocess.run(command, check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, size[1], size[0], 3)


def decode_and_encode(path: str, size: tuple[int, int], resize: bool, quality: int) -> None:
    """BGR pixels out of ffmpeg, then one cv2.imencode per frame, in memory (the extraction before it encoded YUV)."""
    for frame in decode_bgr(path, size, resize):
        cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])


def frame_dir(root: Path, video_id: str) -> Path:
    return root / video_id


def write_jpeg_folder(manifest: pd.DataFrame, short_side: int | None, quality: int, root: Path) -> dict[str, int]:
    """Every frame as ``<root>/<video_id>/<frame:05d>.jpg``, the JPEGs the extraction stores; returns the frame counts."""
    counts = {}
    for row in manifest.itertuples(index=False):
        jpegs, _, _ = video_jpegs(Path(row.path), short_side, quality)
        folder = frame_dir(root, row.video_id)
        folder.mkdir(parents=True, exist_ok=True)
        for index, jpeg in enumerate(jpegs):
            (folder / f"{index:05d}.jpg").write_bytes(jpeg)
        counts[row.video_id] = len(jpegs)
    return counts


def files_on_disk(root: Path) -> tuple[int, int]:
    """(number of files, total bytes) under ``root``."""
    files = [p for p in root.rglob("*") if p.is_file()]
    return len(files), sum(p.stat().st_size for p in files)


def bench_extraction(args, manifest, sizes, counts, workdir) -> tuple[list[Row], Path]:
    resize = args.short_side is not None
    config = PreprocessConfig(short_side=args.short_side, jpeg_quality=args.jpeg_quality, num_shards=1)
    out_dir = workdir / "extract"
    out_dir.mkdir()
    rows = list(manifest.itertuples(index=False))
    # Warm-up (the JPEG folder has already read every video into the OS cache).
    extract_shard(manifest.iloc[:1], SHARD, config, out_dir / "warmup.h5", out_dir / "warmup_rejected.csv")
    bare_decode(rows[0].path, sizes[rows[0].video_id], resize)
    shard_path = workdir / "shards" / "frames.h5"  # alone in its folder, to count the loader's files
    shard_path.parent.mkdir()

    def ours() -> None:
        shard_path.unlink(missing_ok=True)
        extract_shard(manifest, SHARD, config, shard_path, out_dir / "rejected.csv", workers=args.workers)

    timings = measure(
        {
            "ours": ours,
            "bare decode": lambda: [bare_decode(r.path, sizes[r.video_id], resize) for r in rows],
            "decode + JPEG": lambda: [decode_and_encode(r.path, sizes[r.video_id], resize, args.jpeg_quality) for r in rows],
        },
        args.repeat,
    )
    frames = sum(counts.values())
    rate = {name: frames / t.wall for name, t in timings.items()}
    cpu_ratio = {name: timings["ours"].cpu / t.cpu for name, t in timings.items()}
    ours_ms = 1000 * timings["ours"].wall / len(rows)
    return [
        Row("extraction (frames/s) vs bare ffmpeg decode", "frames/s", rate["ours"], rate["bare decode"], goal=1.5,
            note=f"{frames} frames of {len(rows)} videos, {ours_ms:.0f} ms per video, {args.workers} video(s) at once; "
                 f"CPU-time ratio {cpu_ratio['bare decode']:.2f}x"),
        Row("extraction (frames/s) vs ffmpeg decode to pixels + cv2.imencode (info)", "frames/s", rate["ours"], rate["decode + JPEG"],
            note=f"decoding to BGR and encoding with OpenCV, as the extraction did; CPU-time ratio {cpu_ratio['decode + JPEG']:.2f}x"),
    ], shard_path


def flow_config(args: argparse.Namespace) -> FlowConfig:
    return FlowConfig(backend="opencv", nscales=args.nscales, warps=args.warps, epsilon=args.epsilon)


def bench_flow(args, manifest, sizes, counts, jpeg_root, workdir) -> tuple[list[Row], Path, list[str]]:
    config = flow_config(args)
    subset = manifest.sample(n=min(args.flow_videos, len(manifest)), random_state=1).sort_values("video_id")
    out_dir = workdir / "flow"
    out_dir.mkdir()
    frames_path = out_dir / "frames.h5"
    preprocess = PreprocessConfig(short_side=args.short_side, jpeg_quality=args.jpeg_quality, num_shards=1)
    extract_shard(subset, SHARD, preprocess, frames_path, out_dir / "rejected.csv")
    # The greyscale frames flow_shard sees: the same JPEGs, decoded.
    grey = [
        np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2GRAY) for p in sorted(frame_dir(jpeg_root, v).glob("*.jpg"))])
        for v in subset["video_id"]
    ]
    pairs = sum(counts[v] - 1 for v in subset["video_id"])
    flow_path = out_dir / "flow.h5"
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    tvl1 = create_opencv_tvl1(config)
    tvl1.calc(grey[0][0], grey[0][1], None)  # warm-up: the first call allocates the pyramids

    def reference() -> None:
        for frames in grey:
            for prev, nxt in zip(frames[:-1], frames[1:]):
                tvl1.calc(prev, nxt, None)

    def ours() -> None:
        flow_path.unlink(missing_ok=True)
        flow_shard(frames_path, config, flow_path, workers=args.workers)

    try:
        timings = measure({"ours": ours, "reference": reference}, args.repeat)
    finally:
        cv2.setNumThreads(threads)
    stage_rate = pairs / timings["ours"].wall
    width, height = sizes[subset["video_id"].iloc[0]]
    return [
        Row("flow (pairs/s per core) vs bare cv2 TV-L1 loop", "pairs/s/core", stage_rate / args.workers,
            pairs / timings["reference"].wall, goal=1.1,
            note=f"{pairs} pairs of {len(subset)} videos at {width}x{height}; stage {stage_rate:.1f} pairs/s on "
                 f"{args.workers} worker process(es), each video one task; "
                 f"nscales={config.nscales} warps={config.warps} epsilon={config.epsilon}, other TV-L1 values FlowConfig's"),
        Row("flow (pairs per CPU-second, info)", "pairs/CPU-s", pairs / timings["ours"].cpu, pairs / timings["reference"].cpu,
            note="CPU time of all processes, so other load on the machine does not enter; includes the workers' start-up"),
    ], flow_path, list(subset["video_id"])


class JpegFolderClips:
    """The minimal reference loader: the centre frame of each of T equal segments, read with cv2.imread.

    A map-style dataset (``__len__``, ``__getitem__``) yielding what ``ShardClipDataset`` yields
    at test time: (T, 3, h, w) float32, ImageNet-normalised RGB, centre crop.
    """

    def __init__(self, root: Path, video_ids: list[str], labels: list[int], counts: list[int], num_frames: int, crop: tuple[int, int]):
        self.items = [(frame_dir(root, v), label, n) for v, label, n in zip(video_ids, labels, counts)]
        self.num_frames = num_frames
        self.crop = crop

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        import torch

        folder, label, count = self.items[index]
        edges = np.linspace(0, count, self.num_frames + 1)
        picks = np.clip(np.floor((edges[:-1] + edges[1:]) / 2).astype(int), 0, count - 1)
        images = np.stack([cv2.imread(str(folder / f"{p:05d}.jpg")) for p in picks])  # (T, H, W, 3) BGR
        height, width = images.shape[1:3]
        crop_h, crop_w = min(self.crop[0], height), min(self.crop[1], width)
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        rgb = images[:, top : top + crop_h, left : left + crop_w, ::-1]  # (T, h, w, 3)
        clip = ((rgb.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).transpose(0, 3, 1, 2)  # (T, 3, h, w)
        return torch.from_numpy(np.ascontiguousarray(clip)), label


def make_loader(dataset, args: argparse.Namespace):
    from torch.utils.data import DataLoader

    # spawn: this process has used OpenCV's thread pool, which a forked worker can deadlock on.
    workers = dict(num_workers=args.workers, persistent_workers=True, multiprocessing_context="spawn")
    return DataLoader(dataset, batch_size=args.batch_size, shuffle=False, **workers)


def epochs(loader, count: int, normalise: bool = False) -> None:
    """``count`` passes; ``normalise``: the batches are uint8 clips that ``model_input`` converts here."""
    from tclsta.data.dataset import model_input

    for _ in range(count):
        for clips, _ in loader:
            if normalise:
                model_input(clips, "cpu")


def bench_loader(args, manifest, counts, frames_path, flow_path, flow_ids, jpeg_root) -> list[Row]:
    from tclsta.data.dataset import ClipSpec, ShardClipDataset, model_input

    ids, labels = list(manifest["video_id"]), [int(x) for x in manifest["label"]]
    crop = tuple(args.crop)
    rgb_spec = ClipSpec("rgb", num_frames=args.clip_frames, crop_size=crop)
    flow_spec = ClipSpec("flow", num_frames=args.clip_frames, crop_size=crop, flow_stack=args.flow_stack)

    def shard_clips():
        return ShardClipDataset([frames_path], ids, labels, rgb_spec)

    def folder_clips() -> JpegFolderClips:
        return JpegFolderClips(jpeg_root, ids, labels, [counts[v] for v in ids], args.clip_frames, crop)

    # Same work on both sides: the clips must agree (fresh instances, so the loaders' copies hold no open file).
    check_shard, check_folder = shard_clips(), folder_clips()
    # (torchvision and OpenCV may decode a JPEG a level apart: the difference is reported, in units of 1/255 / std.)
    worst = max(float((model_input(check_shard[i][0], "cpu") - check_folder[i][0]).abs().max()) for i in (0, len(ids) - 1))

    loaders = {"ours": make_loader(shard_clips(), args), "reference": make_loader(folder_clips(), args)}
    if flow_path is not None:
        flow_labels = [labels[ids.index(v)] for v in flow_ids]
        loaders["flow"] = make_loader(ShardClipDataset([flow_path], flow_ids, flow_labels, flow_spec), args)
    for name, loader in loaders.items():
        epochs(loader, 1, normalise=name != "reference")  # warm-up: worker start-up, the files' pages in the OS cache
    actions = {name: lambda loader=loader, name=name: epochs(loader, args.loader_epochs, normalise=name != "reference")
               for name, loader in loaders.items()}
    timings = measure(actions, args.repeat)
    clips = len(ids) * args.loader_epochs
    shard_files, shard_bytes = files_on_disk(frames_path.parent)
    folder_files, folder_bytes = files_on_disk(jpeg_root)
    clip_shape = f"T={args.clip_frames}, crop {crop[0]}x{crop[1]}, batch {args.batch_size}, {args.workers} worker(s), {args.loader_epochs} epochs per run"
    rows = [
        Row("loader rgb (clips/s) vs JPEG folder + cv2.imread", "clips/s", clips / timings["ours"].wall,
            clips / timings["reference"].wall, goal=1.0,
            note=f"{len(ids)} clips, {clip_shape}; normalised clips differ by at most {worst:.3g} (one JPEG level: {1 / 255 / 0.225:.3g})"),
        Row("loader files on disk", "files", shard_files, folder_files,
            note=f"{shard_bytes / 2**20:.1f} MiB vs {folder_bytes / 2**20:.1f} MiB"),
        Row("bytes per frame on disk (info)", "B/frame", shard_bytes / sum(counts.values()), folder_bytes / sum(counts.values()),
            note="frames shard (JPEG in HDF5) vs one JPEG file per frame, same quality"),
    ]
    if flow_path is not None:
        rows.append(Row("loader flow (clips/s, info)", "clips/s", len(flow_ids) * args.loader_epochs / timings["flow"].wall, None,
                        note=f"{len(flow_ids)} clips from the flow shard, L={args.flow_stack}, {clip_shape}"))
    return rows


def cell(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "files":
        return f"{value:.0f} files"
    return f"{value:.3g} {unit}" if value < 100 else f"{value:.0f} {unit}"


def goal_cell(row: Row) -> str:
    if row.unit == "files":
        return "far fewer files" + (" (met)" if row.ours * 100 <= row.reference else " (missed)")
    if row.goal is None:
        return "-"
    return f"<= {row.goal:g}x" + ("" if row.ratio is None else " (met)" if row.ratio <= row.goal else " (missed)")


def markdown_table(rows: list[Row]) -> str:
    lines = ["| stage | ours | reference | ratio | goal |", "| --- | --- | --- | --- | --- |"]
    for row in rows:
        ratio = "-" if row.ratio is None else (f"1/{row.ratio:.0f}" if row.unit == "files" else f"{row.ratio:.2f}x")
        lines.append(f"| {row.stage} | {cell(row.ours, row.unit)} | {cell(row.reference, row.unit)} | {ratio} | {goal_cell(row)} |")
    return "\n".join(lines)


def machine() -> dict[str, str]:
    version = subprocess.run([ffmpeg_binaries()[0], "-version"], capture_output=True, text=True).stdout.splitlines()[0]
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": str(os.cpu_count()),
        "python": platform.python_version(),
        "opencv": cv2.__version__,
        "torch": sys.modules["torch"].__version__,
        "ffmpeg": version,
    }


def run(args: argparse.Namespace, workdir: Path) -> list[Row]:
    manifest = load_manifest(args, workdir)
    sizes = {row.video_id: output_size(row.path, args.short_side) for row in manifest.itertuples(index=False)}
    jpeg_root = workdir / "jpeg_folder"
    start = time.perf_counter()
    counts = write_jpeg_folder(manifest, args.short_side, args.jpeg_quality, jpeg_root)
    print(f"wrote the JPEG folder in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    extraction, frames_path = bench_extraction(args, manifest, sizes, counts, workdir)
    print("extraction measured", file=sys.stderr)
    flow, flow_path, flow_ids = [], None, []
    if not args.skip_flow:
        flow, flow_path, flow_ids = bench_flow(args, manifest, sizes, counts, jpeg_root, workdir)
        print("flow measured", file=sys.stderr)
    loader = bench_loader(args, manifest, counts, frames_path, flow_path, flow_ids, jpeg_root)
    return extraction + flow + loader


def main() -> None:
    args = parse_args()
    args.short_side = args.short_side or None
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="tclsta-bench-") as tmp:
        workdir = Path(tmp) if args.workdir is None else args.workdir
        if args.workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir(parents=True)
        rows = run(args, workdir)
    wall, load_after = time.perf_counter() - start, os.getloadavg()[0]
    print(markdown_table(rows))
    print()
    for row in rows:
        print(f"- {row.stage}: {row.note}")
    print(f"- ratio = reference throughput / ours (> 1: ours is slower); wall-time medians of {args.repeat} run(s)")
    print(f"- {os.cpu_count()} CPUs, load average {load_before:.1f} before and {load_after:.1f} after; whole run {wall:.0f} s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        results = [{**asdict(row), "ratio": row.ratio} for row in rows]
        report = {"settings": settings, "machine": machine(), "load_average": [load_before, load_after], "wall_s": wall, "rows": results}
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
