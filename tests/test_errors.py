"""Errors a user can cause: one line naming the file or key and what to do, exit status 2, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import tiny_settings
from tclsta.settings import declared_settings


def run_tclsta(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tclsta", *map(str, args)], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def assert_one_line_error(run: subprocess.CompletedProcess, stage: str, *parts: str) -> None:
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    errors = [line for line in run.stderr.splitlines() if line.startswith(f"tclsta {stage}: error: ")]
    assert len(errors) == 1, run.stderr
    for part in parts:
        assert part in errors[0], errors[0]


def stream_inputs(tiny_dataset, manifest: Path) -> list:
    return ["--manifest", manifest, "--shards", *tiny_dataset.shards, "--threads", "1"]


def test_cuda_device_without_a_gpu(tiny_dataset, tmp_path):
    settings = tiny_settings(tiny_dataset.root)
    settings["train"]["device"] = "cuda"
    run = run_tclsta("score", "--settings", json.dumps(declared_settings("score").select(settings)),
                     *stream_inputs(tiny_dataset, tiny_dataset.manifest_path), "--checkpoint", tmp_path / "rgb.pt",
                     "--output", tmp_path / "rgb.csv", env={"CUDA_VISIBLE_DEVICES": ""})  # no GPU, even where there is one
    assert_one_line_error(run, "score", "train.device", "torch sees no CUDA device", "use auto or cpu")
    assert not (tmp_path / "rgb.csv").exists()


def test_pretrained_weights_missing(tiny_dataset, tmp_path):
    settings = tiny_settings(tiny_dataset.root)
    settings["model"]["pretrained"] = str(tmp_path / "resnet.pth")
    run = run_tclsta("train", "--settings", json.dumps(declared_settings("train").select(settings)), "--stream", "rgb",
                     *stream_inputs(tiny_dataset, tiny_dataset.manifest_path), "--output", tmp_path / "rgb.pt",
                     "--history", tmp_path / "rgb.csv")
    assert_one_line_error(run, "train", "model.pretrained", str(tmp_path / "resnet.pth"), "does not exist")
    assert not (tmp_path / "rgb.pt").exists()


def test_a_path_that_is_not_there(tiny_dataset, tmp_path):
    missing = tmp_path / "no" / "manifest.csv"
    run = run_tclsta("score", "--settings", json.dumps(declared_settings("score").select(tiny_settings(tiny_dataset.root))),
                     *stream_inputs(tiny_dataset, missing), "--checkpoint", tmp_path / "rgb.pt", "--output", tmp_path / "rgb.csv")
    assert_one_line_error(run, "score", f"no such file {missing}", "is not there")


def test_a_bad_value_in_a_csv(tiny_dataset, tmp_path):
    manifest = tmp_path / "manifest.csv"
    lines = tiny_dataset.manifest_path.read_text().splitlines()
    header = lines[0].split(",")
    row = lines[3].split(",")
    row[header.index("label")] = "three"
    manifest.write_text("\n".join([*lines[:3], ",".join(row), *lines[4:]]) + "\n")
    run = run_tclsta("fuse", "--settings", "{}", "--manifest", manifest, "--rgb", tmp_path / "rgb.csv",
                     "--flow", tmp_path / "flow.csv", "--output", tmp_path / "fusion.json")
    assert_one_line_error(run, "fuse", f"bad CSV {manifest}", "row 4, column 'label': expected an integer, got 'three'")
