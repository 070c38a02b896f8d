"""Shared fixtures: a tiny demo dataset made by the project, and its packed shards.

Everything is real: ffmpeg encodes and decodes the videos, OpenCV computes
TV-L1, h5py writes the shards.
"""

from __future__ import annotations

import copy
import email
import importlib.metadata
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement

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


@dataclass
class InstalledTclsta:
    """tclsta installed from its wheel into a venv of its own, outside the checkout."""

    wheel: Path
    python: Path
    env: dict  # the environment a command runs in: the venv's bin/ first on PATH
    pipeline: Path  # the workflow files the wheel carries (tclsta/pipeline)

    def run(self, *args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
        return subprocess.run([*args], cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout)

    def snakemake(self, *args: str, cwd: Path, cores: int = 2, snakefile: Path | None = None) -> subprocess.CompletedProcess:
        """This venv's snakemake in ``cwd`` (which holds the config), on the wheel's own Snakefile unless told another."""
        snakefile = snakefile or self.pipeline / "Snakefile"
        return self.run(str(self.python), "-m", "snakemake", "--cores", str(cores), "--snakefile", str(snakefile), *args, cwd=cwd)


def requirement_closure(requirements: list[str]) -> list[importlib.metadata.Distribution]:
    """The installed distributions ``requirements`` need, with theirs, and so on (markers evaluated here)."""
    found: dict[tuple, importlib.metadata.Distribution] = {}
    todo = [(text, "") for text in requirements]
    while todo:
        text, extra = todo.pop()
        requirement = Requirement(text)
        key = (requirement.name.lower().replace("_", "-"), frozenset(requirement.extras))
        if (requirement.marker and not requirement.marker.evaluate({"extra": extra})) or key in found:
            continue
        found[key] = dist = importlib.metadata.distribution(requirement.name)
        todo += [(text, extra) for text in dist.requires or [] for extra in ("", *requirement.extras)]
    return list(found.values())


def fresh_venv(path: Path, requirements: list[str]) -> Path:
    """A venv at ``path`` that sees only the distributions ``requirements`` need, this venv's installed
    copies linked in (torch too: nothing is downloaded); returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    shared = path / "requirements"
    shared.mkdir()
    for dist in requirement_closure(requirements):
        for top in {file.parts[0] for file in dist.files or []} - {"..", "__pycache__"}:
            source = Path(dist.locate_file(top))
            if source.exists() and not source.name.endswith(".pth") and not (shared / top).exists():
                (shared / top).symlink_to(source)
    site = next(path.glob("lib/python*/site-packages"))
    (site / "requirements.pth").write_text(f"{shared}\n")
    return path / "bin" / "python"


def wheel_metadata(wheel: Path) -> email.message.Message:
    """The wheel's METADATA (name, Requires-Dist, Classifier, Project-URL, ...)."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(archive.read(name))


@pytest.fixture(scope="session")
def installed_tclsta(tmp_path_factory) -> InstalledTclsta:
    """The wheel of this checkout (pip wheel, no build isolation: nothing downloaded), installed by pip
    --no-index into a fresh venv that sees only what the wheel declares it needs."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "--wheel-dir",
                    str(root), str(REPO)], check=True, capture_output=True, timeout=300)
    wheel = next(root.glob("tclsta-*.whl"))
    requires = [r for r in wheel_metadata(wheel).get_all("Requires-Dist") if "extra ==" not in r]
    python = fresh_venv(root / "venv", requires)
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-index", "--quiet", str(wheel)],
                             capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    env = {**os.environ, "PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}", "VIRTUAL_ENV": str(python.parent.parent)}
    pipeline = subprocess.run([str(python), "-m", "tclsta", "pipeline-dir"], env=env, cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
    return InstalledTclsta(wheel, python, env, Path(pipeline))
