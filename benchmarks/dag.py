"""Time Snakemake takes to build the DAG of a UCF101-sized dataset (goal: under a minute).

Generates 13,320 empty videos in the UCF101 layout (101 classes, groups g01-g25; groups
g01-g07 are the test split, as in UCF101's split 1) with their ``classInd.txt``,
``trainlist01.txt`` and ``testlist01.txt`` in a temp dir, next to a copy of the workflow whose
config holds only that dataset. The manifest checkpoint then runs for real, and the figure is
the wall time of ``snakemake -n results/ucf101/report.html``, which reads the 13,320-row
manifest for every shard and checks every video file. Example::

    .venv/bin/python benchmarks/dag.py --shards 64
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
GOAL_S = 60.0


def make_ucf_layout(root: Path, videos: int, classes: int, groups: int = 25, test_groups: int = 7) -> None:
    """Empty videos ``<root>/videos/<Class>/v_<Class>_gXX_cYY.avi`` and UCF101 split files."""
    names = [f"Action{k:03d}" for k in range(classes)]
    train, test = [], []
    for index in range(videos):
        label, rank = index % classes, index // classes
        group, clip = rank % groups + 1, rank // groups + 1
        name = names[label]
        relative = f"{name}/v_{name}_g{group:02d}_c{clip:02d}.avi"
        (root / "videos" / name).mkdir(parents=True, exist_ok=True)
        (root / "videos" / relative).touch()
        (test if group <= test_groups else train).append((relative, label + 1))
    splits = root / "splits"
    splits.mkdir()
    (splits / "classInd.txt").write_text("".join(f"{k + 1} {n}\n" for k, n in enumerate(names)))
    (splits / "trainlist01.txt").write_text("".join(f"{p} {label}\n" for p, label in train))
    (splits / "testlist01.txt").write_text("".join(f"{p}\n" for p, _ in test))


def make_workflow(workdir: Path, data: Path, shards: int) -> None:
    for name in ("Snakefile", "rules", "workflow", "envs"):
        source = REPO / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, workdir / name)
    dataset = {"format": "ucf101", "root": str(data / "videos"), "splits_dir": str(data / "splits"), "split": 1,
               "preprocess": {"num_shards": shards}}
    (workdir / "config.yaml").write_text(yaml.safe_dump({"datasets": {"ucf101": dataset}}))


def snakemake(workdir: Path, *args: str) -> float:
    """Wall time of one ``snakemake`` call, which must succeed."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}  # jobs' python
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", *args], cwd=workdir, env=env,
                         capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"snakemake {' '.join(args)} failed:\n{run.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=13_320)
    parser.add_argument("--classes", type=int, default=101)
    parser.add_argument("--shards", type=int, default=16, help="preprocess.num_shards")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tclsta-dag-") as tmp:
        data, workdir = Path(tmp) / "data", Path(tmp) / "workflow"
        workdir.mkdir()
        make_ucf_layout(data, args.videos, args.classes)
        make_workflow(workdir, data, args.shards)
        manifest_s = snakemake(workdir, "results/ucf101/manifest.csv")
        dag_s = snakemake(workdir, "-n", "results/ucf101/report.html")

    print(f"| what ({args.videos} videos, {args.shards} shards) | seconds | goal |")
    print("| --- | --- | --- |")
    print(f"| manifest checkpoint (real run, with Snakemake's start) | {manifest_s:.1f} | |")
    print(f"| `snakemake -n results/ucf101/report.html` (DAG build) | {dag_s:.1f} | under {GOAL_S:.0f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"videos": args.videos, "shards": args.shards,
                                         "manifest_s": manifest_s, "dag_dry_run_s": dag_s}, indent=2))


if __name__ == "__main__":
    main()
