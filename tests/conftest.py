"""Shared fixtures: a tiny demo dataset made by the project, and its packed shards.

Everything is real: ffmpeg encodes and decodes the videos, OpenCV computes
TV-L1, h5py writes the shards.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tclsta.config import DatasetConfig, parse_dataset
from tclsta.data.manifest import build_ucf_manifest
from tclsta.demo import make_demo_dataset
from tclsta.preprocess import extract_shard, flow_shard, pack_shard
from tiny_results import build_tiny_results

REPO = Path(__file__).resolve().parent.parent

# Small enough for a 2-core CI machine, large enough to carve train/val/test by group.
TINY_DEMO = dict(classes_per_kind=2, groups=3, clips_per_group=2, num_frames=12, width=64, height=48, seed=0)
TINY_SETTINGS = {
    "name": "tiny",
    "format": "demo",
    "root": "data/tiny/videos",
    "splits_dir": "data/tiny/splits",
    "split": 1,
    "demo": TINY_DEMO,
    "preprocess": {"short_side": None, "num_shards": 2, "min_frames": 8, "jpeg_quality": 90, "on_bad_video": "fail"},
    "flow": {"nscales": 2, "warps": 2, "epsilon": 0.05},
    "model": {"backbone": "small", "flow_stack": 2, "spatial_hidden": 16, "temporal_hidden": 16, "dropout": 0.0},
    "train": {
        "stages": [{"name": "joint", "epochs": 2, "lr": 0.003}], "batch_size": 4, "optimizer": "adam",
        "train_frames": 3, "test_frames": 4,
        "crop_size": [40, 56], "flip": False, "val_fraction": 0.5, "num_workers": 0, "device": "cpu", "seed": 0,
    },
    "fusion": {"steps": 50},
}


def run_snakemake(workdir: Path, *args: str, cores: int = 2, timeout: int = 900) -> subprocess.CompletedProcess:
    """The real ``snakemake`` of this environment, run in ``workdir``."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", str(cores), *args], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=timeout)


def tiny_settings(root: Path) -> dict:
    """TINY_SETTINGS with the dataset paths under ``root``."""
    settings = copy.deepcopy(TINY_SETTINGS)
    settings["root"] = str(root / "videos")
    settings["splits_dir"] = str(root / "splits")
    return settings


@dataclass
class TinyDataset:
    root: Path
    config: DatasetConfig
    manifest_path: Path
    shards: list[Path]
    rejected: list[Path]


@pytest.fixture(scope="session")
def tiny_videos(tmp_path_factory) -> Path:
    """A tiny demo dataset: 4 classes x 6 videos of 12 frames at 64x48."""
    root = tmp_path_factory.mktemp("tiny")
    make_demo_dataset(root, **TINY_DEMO)
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tiny_videos, tmp_path_factory) -> TinyDataset:
    """The tiny dataset run through manifest, extraction, flow and packing."""
    out = tmp_path_factory.mktemp("tiny_shards")
    config = parse_dataset(tiny_settings(tiny_videos))
    manifest = build_ucf_manifest(Path(config.root), Path(config.splits_dir), 1, config.train.val_fraction,
                                  config.preprocess.num_shards, config.train.seed)
    manifest_path = out / "manifest.csv"
    manifest.to_csv(manifest_path, index=False)
    shards, rejected = [], []
    for shard in range(config.preprocess.num_shards):
        frames, flow, packed = out / f"frames_{shard}.h5", out / f"flow_{shard}.h5", out / f"shard_{shard}.h5"
        rejected.append(out / f"rejected_{shard}.csv")
        extract_shard(manifest, shard, config.preprocess, frames, rejected[-1])
        flow_shard(frames, config.flow, flow, workers=2)
        pack_shard(frames, flow, packed, config.flow.bound)
        shards.append(packed)
    return TinyDataset(tiny_videos, config, manifest_path, shards, rejected)


@pytest.fixture(scope="session")
def tiny_results(tiny_dataset, tmp_path_factory) -> Path:
    """A results folder of the tiny dataset: both streams trained, scored, fused and evaluated."""
    return build_tiny_results(tiny_dataset, tmp_path_factory.mktemp("tiny_results"))
