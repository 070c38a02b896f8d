"""kill -9 of each stage at a random moment, and of the Snakemake DAG: the re-run completes with outputs
equal to an uninterrupted run's.

Each stage runs once uninterrupted (the reference, and its duration T), then, for one seeded draw after
another, is killed with SIGKILL (its whole process group, workers included) at a moment drawn uniformly
from [0, T) and run again to completion into the same folder, until the stage has used its share of the
time (``TCLSTA_KILL_STAGE_SECONDS``, 4 s; at least one kill). The seed is drawn anew for each session
and printed; ``TCLSTA_KILL_SEED=<seed>`` repeats a session's kill moments.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import tiny_settings
from reliability.faults import VENV_ENV, kill_midway, shard_contents, stage_command, temp_files
from tclsta.data.manifest import read_manifest
from tclsta.features import extract_features
from test_workflow import shards_of, snakemake, workdir  # noqa: F401  (workdir is a fixture)

SEED = int(os.environ.get("TCLSTA_KILL_SEED") or random.SystemRandom().randrange(1_000_000))
STAGE_SECONDS = float(os.environ.get("TCLSTA_KILL_STAGE_SECONDS", "4"))


def stage_args(stage: str, tiny, results: Path, features: Path, out: Path) -> tuple[list, list[str]]:
    """The arguments of ``python -m tclsta <stage>`` on the tiny dataset (shard 0 for the shard stages), writing
    into ``out``, and the names of the outputs it writes there."""
    frames, flow = (tiny.shards[0].with_name(f"{kind}_0.h5") for kind in ("frames", "flow"))
    shards = ["--manifest", tiny.manifest_path, "--shards", *tiny.shards, "--threads", "1"]
    models = results / "models"
    return {
        "extract": (["--shard", "0", "--manifest", tiny.manifest_path, "--output", out / "frames_0.h5",
                     "--rejected", out / "rejected_0.csv"], ["frames_0.h5", "rejected_0.csv"]),
        "flow": (["--workers", "2", "--frames", frames, "--output", out / "flow_0.h5"], ["flow_0.h5"]),
        "pack": (["--frames", frames, "--flow", flow, "--output", out / "shard_0.h5"], ["shard_0.h5"]),
        "train": (["--stream", "rgb", *shards, "--output", out / "rgb.pt", "--history", out / "rgb_history.csv"],
                  ["rgb.pt", "rgb_history.csv"]),
        "score": (["--checkpoint", models / "rgb.pt", *shards, "--output", out / "rgb.csv"], ["rgb.csv"]),
        "features": (["--checkpoint", models / "flow.pt", *shards, "--output", out / "features.h5"], ["features.h5"]),
        "collaborative": (["--rgb", features / "rgb.h5", "--flow", features / "flow.h5", "--manifest", tiny.manifest_path, "--threads", "1",
                           "--model", out / "collaborative.pt", "--history", out / "collaborative_history.csv",
                           "--output", out / "collaborative.csv"],
                          ["collaborative.pt", "collaborative_history.csv", "collaborative.csv"]),
        "report": (["--metrics", results / "metrics.json", "--manifest", results / "manifest.csv", "--rgb-history",
                    models / "rgb_history.csv", "--flow-history", models / "flow_history.csv", "--output", out / "report.html"],
                   ["report.html"]),
    }[stage]


def contents(path: Path) -> object:
    """What an output holds, less what differs between any two runs (timings, the report's generation time)."""
    if path.suffix == ".h5":
        return h5_contents(path) if path.name == "features.h5" else shard_contents(path)
    if path.suffix == ".pt":
        return tensors_as_bytes(torch.load(path, weights_only=True))
    if path.suffix == ".csv":
        return pd.read_csv(path).filter(regex="^(?!.*seconds$)").to_dict("list")
    return re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [^<]*", "<generated>", path.read_text(encoding="utf-8"))


def h5_contents(path: Path) -> dict:
    """Every dataset's values and every attribute of an HDF5 file (the features cache)."""
    items = {}

    def add(name: str, item: h5py.Group | h5py.Dataset) -> None:
        values = item[()] if isinstance(item, h5py.Dataset) else None
        items[name] = (values.tolist() if values is not None else None, {k: str(v) for k, v in item.attrs.items()})

    with h5py.File(path, "r") as file:
        file.visititems(add)
        items["/"] = {k: str(v) for k, v in file.attrs.items()}
    return items


def tensors_as_bytes(value: object) -> object:
    """A checkpoint's nested dicts and lists with each tensor as (dtype, shape, bytes), for equality."""
    if isinstance(value, torch.Tensor):
        return str(value.dtype), tuple(value.shape), value.numpy().tobytes()
    if isinstance(value, dict):
        return {k: tensors_as_bytes(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [tensors_as_bytes(v) for v in value]
    return value


def timed_run(command: list, cwd: Path) -> float:
    start = time.monotonic()
    run = subprocess.run(command, cwd=cwd, env=VENV_ENV, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return time.monotonic() - start


@pytest.fixture(scope="module")
def features(tiny_dataset, tiny_results, tmp_path_factory) -> Path:
    """Both streams' feature caches of the tiny results, the collaborative stage's input."""
    out = tmp_path_factory.mktemp("features")
    manifest = read_manifest(tiny_dataset.manifest_path)
    for stream in ("rgb", "flow"):
        extract_features(tiny_results / "models" / f"{stream}.pt", tiny_dataset.shards, manifest, tiny_dataset.config.train,
                         out / f"{stream}.h5")
    return out


@pytest.mark.parametrize("stage", ["extract", "flow", "pack", "train", "score", "features", "collaborative", "report"])
def test_stage_killed_at_a_random_moment_reruns_to_the_same_outputs(tiny_dataset, tiny_results, features, tmp_path, stage):
    print(f"kill test seed {SEED} (TCLSTA_KILL_SEED={SEED} repeats it)")
    settings = {**tiny_settings(tiny_dataset.root), "collaborative": {"epochs": 20}}
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    args, outputs = stage_args(stage, tiny_dataset, tiny_results, features, reference)
    reference.mkdir()
    killed.mkdir()
    start = time.monotonic()
    seconds = timed_run(stage_command(stage, settings, *args), tmp_path)
    expected = {name: contents(reference / name) for name in outputs}
    command = stage_command(stage, settings, *stage_args(stage, tiny_dataset, tiny_results, features, killed)[0])
    draws = 0
    while draws == 0 or time.monotonic() - start < STAGE_SECONDS:
        draws += 1
        moment = random.Random(f"{SEED}:{stage}:{draws}").uniform(0, seconds)
        where = f"seed {SEED}, kill {draws} at {moment:.2f} s of {seconds:.2f} s"
        status = kill_midway(command, tmp_path, lambda: True, moment)
        assert status in (-9, 0), where  # 0: it ended before the moment came
        for name in outputs:  # nothing half-written under an output's name: absent, or whole
            assert not (killed / name).exists() or contents(killed / name) == expected[name], f"{name} half-written ({where})"
        timed_run(command, tmp_path)
        for name in outputs:
            assert contents(killed / name) == expected[name], f"{name} differs ({where})"
        assert not temp_files(killed) and not list(killed.glob("*.resume")), where  # the re-run cleaned up
        print(f"{stage}: {where}: status {status}, re-run equal")


def test_killed_dag_resumes_after_unlock(workdir, tiny_dataset):  # noqa: F811
    """kill -9 of Snakemake and its jobs while a flow job runs; the README's recovery commands finish the shard."""
    shard = shards_of(workdir) / "shard_0.h5"
    target = str(shard.relative_to(workdir))  # as the rule's output names it
    flow_log = workdir / "logs/flow" / f"{shard.parent.name}_0.log"
    delay = np.random.default_rng(0).uniform(0, 1.5)
    command = [sys.executable, "-m", "snakemake", "--cores", "2", target]
    status = kill_midway(command, workdir, flow_log.exists, delay)
    assert status == -9
    assert not shard.exists()

    locked = snakemake(workdir, target)
    assert locked.returncode != 0 and "--unlock" in locked.stderr
    assert snakemake(workdir, "--unlock").returncode == 0
    resumed = snakemake(workdir, target)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    different_files = ("source_path", "source_mtime")  # the workflow generated its own copy of the demo videos
    assert shard_contents(shard, different_files) == shard_contents(tiny_dataset.shards[0], different_files)
