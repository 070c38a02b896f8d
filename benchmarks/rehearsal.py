"""The UCF101 recipe rehearsed end to end at its real shapes, on generated data (``make rehearsal``).

1. Generates a dataset in the UCF101 layout under ``data/<name>/``: 101 class folders
   (``UCF-101/<Class>/v_<Class>_gXX_cYY.avi``), 320x240 25 fps videos of 4-8 s, every other one
   Xvid (ffmpeg's MPEG-4 part 2 with the XVID tag) + MP3 and the others H.264 (libx264) + AAC, and
   ``ucfTrainTestlist/`` with ``classInd.txt``, ``trainlist01.txt`` and ``testlist01.txt`` in the
   official formats. ``--videos-per-class`` videos (groups g01, g02, ...; the first third of the
   groups, at least one, are test videos; of the others, the manifest holds about a fifth, at least
   one, out for validation) in the first ``--classes-with-videos`` classes; every class
   has one training video (the manifest wants one per class), so the networks have their 101 outputs.
   ``--classes`` cuts the classes too (the last layers' width; everything else keeps its shape).
2. Saves a torchvision ResNet-50 state dict (random initialisation, torchvision's format) to
   ``data/<name>/resnet50-random.pth``; ``model.pretrained`` names it, so it is read through
   the same loading path as the ImageNet file.
3. Runs ``snakemake results/<name>/report.html`` with the real ``ucf101`` recipe (ResNet-50 at 224,
   10 frames per training clip, 25 frames x 10 crops at test, the paper's three stages, features,
   collaborative model, attention, report) and only counts cut: videos, epochs per stage
   (``--epochs``), collaborative epochs, shards, and TV-L1's iteration counts (``--flow-counts``:
   scales, warps, outer and inner iterations).
4. Prints, and writes to ``results/<name>/rehearsal.md``, each rule's jobs, wall time and peak
   memory (Snakemake's benchmark files: ``s`` and ``max_rss``).

Example (what ``make rehearsal`` runs)::

    .venv/bin/python benchmarks/rehearsal.py --cores 2
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torchvision
import yaml

from tclsta.shared import shards_folder
from tclsta.video import ffmpeg_binaries

CLASSES = 101
WIDTH, HEIGHT, FPS = 320, 240, 25
ONE_THREAD_RULES = ("train_stream", "score_stream", "features", "collaborative", "attention")


def class_names(count: int) -> list[str]:
    """UCF-style CamelCase class names (letters only, as the official ones)."""
    return [f"Action{chr(65 + i // 26)}{chr(97 + i % 26)}" for i in range(count)]


def frames(label: int, seconds: float, seed: int) -> np.ndarray:
    """(N, H, W, 3) uint8: a textured background and a square moving at a class-specific velocity."""
    rng = np.random.default_rng(seed)
    count = round(seconds * FPS)
    background = rng.integers(0, 256, (HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    colour = np.array([(label * 53) % 256, (label * 97) % 256, (label * 151) % 256], np.uint8)
    angle = 2 * np.pi * label / CLASSES
    video = np.repeat(background[None], count, axis=0)
    for t in range(count):
        x = int(WIDTH / 2 + 100 * np.cos(angle) * np.sin(t / 20)) - 24
        y = int(HEIGHT / 2 + 70 * np.sin(angle) * np.sin(t / 20)) - 24
        video[t, max(y, 0):y + 48, max(x, 0):x + 48] = colour
    return video


def encode(path: Path, video: np.ndarray, xvid: bool) -> None:
    """Write ``video`` with a sine tone: Xvid + MP3 or H.264 + AAC, in an AVI file."""
    codecs = (["-c:v", "mpeg4", "-vtag", "XVID", "-q:v", "4", "-c:a", "libmp3lame"] if xvid else
              ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac"])
    seconds = len(video) / FPS
    command = [ffmpeg_binaries()[0], "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{WIDTH}x{HEIGHT}",
               "-r", str(FPS), "-i", "pipe:", "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
               *codecs, "-shortest", str(path)]
    subprocess.run(command, input=video.tobytes(), check=True)


def make_dataset(root: Path, classes: int, videos_per_class: int, classes_with_videos: int, seconds: tuple[float, float]) -> int:
    """The UCF101-layout dataset under ``root`` (videos already there are kept); returns the number of videos.

    The first ``classes_with_videos`` classes get ``videos_per_class`` videos (test, validation, training);
    every other class one training video (each class needs one)."""
    names = class_names(classes)
    videos, splits = root / "UCF-101", root / "ucfTrainTestlist"
    splits.mkdir(parents=True, exist_ok=True)
    test_groups = max(1, videos_per_class // 3)
    train, test, count = [], [], 0
    for label, name in enumerate(names):
        (videos / name).mkdir(parents=True, exist_ok=True)
        groups = range(1, videos_per_class + 1) if label < classes_with_videos else [videos_per_class]  # a training group
        for group in groups:
            relative = f"{name}/v_{name}_g{group:02d}_c01.avi"
            seed = label * 1000 + group
            if not (videos / relative).is_file():
                length = np.random.default_rng(seed).uniform(*seconds)
                encode(videos / relative, frames(label, length, seed), xvid=count % 2 == 0)
            count += 1
            (test if group <= test_groups else train).append((relative, label + 1))
    (splits / "classInd.txt").write_text("".join(f"{i} {name}\r\n" for i, name in enumerate(names, 1)))  # CRLF, as the official files
    (splits / "trainlist01.txt").write_text("".join(f"{path} {label}\r\n" for path, label in train))
    (splits / "testlist01.txt").write_text("".join(f"{path}\r\n" for path, _ in test))
    return count


def save_weights(path: Path) -> None:
    """A torchvision ResNet-50 state dict, randomly initialised (seed 0), where ImageNet weights would be."""
    if path.is_file():
        return
    torch.manual_seed(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), path)


def rehearsal_config(name: str, root: Path, weights: Path, epochs: int, flow_counts: list[int], shards: int) -> dict:
    """A config adding the dataset ``name``: the ucf101 recipe, only counts cut."""
    stages = [{"name": stage, "epochs": epochs, "lr": lr} for stage, lr in (("spatial", 1e-3), ("temporal", 1e-3), ("joint", 1e-5))]
    nscales, warps, outer, inner = flow_counts
    entry = {
        "format": "ucf101", "root": str(root / "UCF-101"), "splits_dir": str(root / "ucfTrainTestlist"), "split": 1,
        "preprocess": {"num_shards": shards},
        "flow": {"nscales": nscales, "warps": warps, "outer_iterations": outer, "inner_iterations": inner},
        "model": {"pretrained": str(weights)},
        "train": {"stages": stages, "num_workers": 1},
        "collaborative": {"epochs": max(2, epochs)},
    }
    return {"datasets": {name: entry}}


def job_table(folders: list[Path]) -> pd.DataFrame:
    """Per rule: jobs, total and longest wall time (s), total CPU time (s), peak memory (MB) of its jobs' benchmark files."""
    rows = []
    for path in sorted(path for folder in folders for path in glob.glob(str(folder / "*" / "*.tsv"))):
        values = pd.read_csv(path, sep="\t").iloc[-1]
        rows.append({"rule": Path(path).parent.name, "s": float(values["s"]), "cpu_time": float(values["cpu_time"]),
                     "max_rss": float(values["max_rss"])})
    frame = pd.DataFrame(rows)
    return frame.groupby("rule", sort=False).agg(jobs=("s", "size"), total_s=("s", "sum"), longest_s=("s", "max"),
                                                  cpu_s=("cpu_time", "sum"), peak_mb=("max_rss", "max")).reset_index()


def markdown(table: pd.DataFrame) -> str:
    lines = ["| rule | jobs | wall time, all jobs (s) | longest job (s) | CPU time, all jobs (s) | peak memory (MB, max_rss) |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| `{r.rule}` | {r.jobs} | {r.total_s:.0f} | {r.longest_s:.0f} | {r.cpu_s:.0f} | {r.peak_mb:.0f} |" for r in table.itertuples()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", default="rehearsal", help="the dataset's name: data/<name>/, results/<name>/")
    parser.add_argument("--classes", type=int, default=CLASSES, help="classes (UCF101: 101)")
    parser.add_argument("--videos-per-class", type=int, default=3,
                        help="videos of each class with videos (at least 3: one each for test, validation and training)")
    parser.add_argument("--classes-with-videos", type=int, default=2,
                        help="how many classes get --videos-per-class videos; the others get one training video")
    parser.add_argument("--seconds", type=float, nargs=2, default=(4.0, 8.0), help="shortest and longest video")
    parser.add_argument("--epochs", type=int, default=1, help="epochs of each of the three training stages")
    parser.add_argument("--flow-counts", type=int, nargs=4, default=(2, 1, 1, 5), metavar=("NSCALES", "WARPS", "OUTER", "INNER"),
                        help="TV-L1's counts (the recipe's: 5 5 10 30)")
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--cores", default="2")
    args = parser.parse_args()
    if args.videos_per_class < 3 or not 1 <= args.classes_with_videos <= args.classes:
        parser.error("--videos-per-class needs at least 3 (test, validation, training); --classes-with-videos 1 to --classes")
    root = Path("data") / args.name
    weights = root / "resnet50-random.pth"
    count = make_dataset(root, args.classes, args.videos_per_class, args.classes_with_videos, tuple(args.seconds))
    save_weights(weights)
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(rehearsal_config(args.name, root, weights, args.epochs, args.flow_counts, args.shards)))
    print(f"{count} videos of {args.classes} classes under {root}; weights {weights}", flush=True)
    start = time.time()
    # The machine's memory as a resource: a training job at the recipe's batch declares 16 GB (it peaks at about
    # 8 GB on a CPU), so two at once would not fit a 24 GB machine; Snakemake then runs them one after the other.
    memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    command = [sys.executable, "-m", "snakemake", f"results/{args.name}/report.html", "--cores", args.cores,
               "--resources", f"mem_mb={memory_mb}", "--configfile", "config.yaml", str(config_path),
               "--set-threads", *(f"{rule}=1" for rule in ONE_THREAD_RULES)]
    subprocess.run(command, check=True)
    config = yaml.safe_load(Path("config.yaml").read_text())
    config["datasets"].update(yaml.safe_load(config_path.read_text())["datasets"])
    shards = shards_folder(config, args.name)  # extraction, flow and packing: the shared shards' folder
    table = markdown(job_table([Path("results") / args.name / "benchmarks", shards / "benchmarks"]))
    summary = (f"`{' '.join(sys.argv)}`: {count} videos, snakemake wall time {time.time() - start:.0f} s "
               f"(jobs that were already done are not re-run; their rows are from their run).\n\n{table}\n")
    (Path("results") / args.name / "rehearsal.md").write_text(summary)
    print(summary)


if __name__ == "__main__":
    main()
