"""Bad input met by the stages: every bad video of the dataset issue at once, videos changed
between runs, and checkpoints carrying pickled objects."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from torchvision.models import ResNet18_Weights

from conftest import tiny_settings
from reliability.faults import reencode, run_stage, shard_contents
from tclsta.collaborative import load_collaborative
from tclsta.config import PreprocessConfig
from tclsta.data.manifest import build_ucf_manifest
from tclsta.cli import main
from tclsta.errors import BadModelFileError, FileError
from tclsta.export import BUNDLE_FORMAT, BUNDLE_VERSION
from tclsta.models.backbones import build_backbone
from tclsta.preprocess import extract_shard
from tclsta.inference import load_checkpoint
from tclsta.train import Runtime, _load_resume_state
from test_video import audio_only_file  # noqa: F401  (a fixture)


@pytest.fixture
def dataset_copy(tiny_videos, tmp_path) -> tuple[Path, pd.DataFrame]:
    """A writable copy of the tiny dataset and its manifest."""
    root = tmp_path / "ds"
    shutil.copytree(tiny_videos, root)
    manifest = build_ucf_manifest(root / "videos", root / "splits", 1, 0.5, 2, 0, strict=False)
    return root, manifest


def test_every_bad_video_of_a_shard_is_named_then_skipped(dataset_copy, audio_only_file, tmp_path):  # noqa: F811
    root, manifest = dataset_copy
    videos = [Path(p) for p in manifest.loc[manifest["shard"] == 0, "path"]]
    videos[0].write_bytes(b"this is not a video" * 50)
    videos[1].write_bytes(b"")
    shutil.copy(audio_only_file, videos[2])
    reencode(videos[3], tmp_path / "short.avi", frames=5)
    shutil.copy(tmp_path / "short.avi", videos[3])
    videos[4].unlink()
    reasons = ["unreadable or corrupt", "empty file", "no video stream", "5 frames, fewer than preprocess.min_frames=8",
               "file not found"]
    manifest_path = tmp_path / "manifest.csv"
    manifest.to_csv(manifest_path, index=False)
    settings = tiny_settings(root)
    outputs = ("--shard", "0", "--manifest", manifest_path, "--output", tmp_path / "frames_0.h5", "--rejected", tmp_path / "rejected_0.csv")

    failed = run_stage("extract", settings, *outputs)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "5 bad video(s) in shard 0 (set preprocess.on_bad_video: skip to leave them out)" in failed.stderr
    for video, reason in zip(videos, reasons):
        assert f"{video}: {reason}" in failed.stderr
    assert not (tmp_path / "frames_0.h5").exists()

    settings["preprocess"]["on_bad_video"] = "skip"
    skipped = run_stage("extract", settings, *outputs)
    assert skipped.returncode == 0, skipped.stderr[-2000:]
    rejected = pd.read_csv(tmp_path / "rejected_0.csv")
    assert rejected["path"].tolist() == [str(v) for v in videos[:5]]  # sorted by id, as extracted
    assert all(reason in text for reason, text in zip(reasons, rejected["reason"]))
    assert len(shard_contents(tmp_path / "frames_0.h5")) == len(videos) - 5


def test_changed_videos_are_extracted_again_and_the_rest_reused(dataset_copy, tmp_path, caplog):
    root, manifest = dataset_copy
    config = PreprocessConfig(short_side=None)
    first = tmp_path / "first.h5"
    extract_shard(manifest, 0, config, first, tmp_path / "rejected.csv")
    videos = manifest.loc[manifest["shard"] == 0].sort_values("video_id")
    shorter, touched = (Path(p) for p in videos["path"].iloc[:2])
    reencode(shorter, tmp_path / "shorter.avi", frames=10)
    shutil.copy(tmp_path / "shorter.avi", shorter)  # new content, size and mtime
    os.utime(touched, (touched.stat().st_atime, touched.stat().st_mtime + 10))  # same bytes, new mtime

    caplog.set_level(logging.INFO, logger="tclsta.preprocess")
    extract_shard(manifest, 0, config, tmp_path / "second.h5", tmp_path / "rejected.csv", previous=first)
    assert f"shard 0: 2 videos extracted, {len(videos) - 2} reused, 0 rejected" in caplog.text
    before, after = shard_contents(first), shard_contents(tmp_path / "second.h5")
    shorter_id, touched_id = videos["video_id"].iloc[:2]
    assert after[shorter_id]["record"]["num_frames"] == len(after[shorter_id]["frames"]) == 10
    assert after[touched_id]["frames"] == before[touched_id]["frames"]  # decoded again, to the same frames
    assert after[touched_id]["record"]["source_mtime"] == touched.stat().st_mtime
    assert {v: after[v] for v in videos["video_id"].iloc[2:]} == {v: before[v] for v in videos["video_id"].iloc[2:]}


class Payload:
    """Unpickling this runs code: it creates the file ``marker``."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def test_checkpoint_with_a_pickled_object_is_refused(tmp_path):
    marker = tmp_path / "code_ran"
    path = tmp_path / "rgb.pt"
    torch.save({"model_config": {}, "modality": "rgb", "classes": ["a"], "state_dict": {}, "extra": Payload(marker)}, path)
    with pytest.raises(BadModelFileError, match=f"bad model file {path}: UnpicklingError: Weights only load failed"):
        load_checkpoint(path, torch.device("cpu"))
    assert not marker.exists()


def plant(path: Path, marker: Path) -> Path:
    """A file at ``path`` that runs code (creating ``marker``) when unpickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"conv1.weight": torch.zeros(1), "run_key": "k", "extra": Payload(marker)}, path)
    return path


LOADERS = {
    "checkpoint": lambda folder: load_checkpoint(folder / "rgb.pt", torch.device("cpu")),
    "collaborative model": lambda folder: load_collaborative(folder / "collaborative.pt", torch.device("cpu")),
    "training resume state": lambda folder: _load_resume_state(folder / "rgb.pt.resume", "k", Runtime(torch.device("cpu"))),
    "local pretrained weights": lambda folder: build_backbone("small", 3, str(folder / "weights.pth")),
    "ImageNet weights in resources/": lambda folder: build_backbone("resnet18", 3, "imagenet"),
}
PLANTED = {
    "checkpoint": "rgb.pt",
    "collaborative model": "collaborative.pt",
    "training resume state": "rgb.pt.resume/last.pt",
    "local pretrained weights": "weights.pth",
    "ImageNet weights in resources/": f"resources/{Path(ResNet18_Weights.IMAGENET1K_V1.url).name}",
}


@pytest.mark.parametrize("loader", LOADERS)
def test_every_load_refuses_a_planted_payload(tmp_path, monkeypatch, caplog, loader):
    """Each place the project loads weights from, at run time, with a file that would run code."""
    monkeypatch.chdir(tmp_path)  # model.pretrained: imagenet reads resources/<torchvision file name>
    marker = tmp_path / "code_ran"
    plant(tmp_path / PLANTED[loader], marker)
    if loader == "training resume state":  # refused, moved aside, and training starts over
        with caplog.at_level(logging.WARNING, logger="tclsta.train"):
            assert LOADERS[loader](tmp_path) is None
        refused = caplog.text
        assert (tmp_path / "rgb.pt.resume.damaged" / "last.pt").is_file() and not (tmp_path / "rgb.pt.resume").exists()
    else:
        with pytest.raises(FileError) as error:
            LOADERS[loader](tmp_path)
        refused = str(error.value)
    assert not marker.exists()
    if loader == "ImageNet weights in resources/":  # refused for its hash before torch.load is reached
        assert "SHA-256" in refused and "delete the file" in refused
    else:
        assert "Weights only load failed" in refused


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGES = {  # file of a results folder (or bundle), damage, what the one line says
    "checkpoint-truncated": ("models/rgb.pt", truncated, "RuntimeError: PytorchStreamReader failed"),
    "checkpoint-not-torch": ("models/flow.pt", lambda path: path.write_text("not a checkpoint"), "UnpicklingError"),
    "checkpoint-foreign": ("models/rgb.pt", lambda path: torch.save({"state_dict": {}}, path), "KeyError: 'model_config'"),
    "fusion-truncated": ("fusion.json", truncated, "JSONDecodeError"),
    "fusion-lacks-weights": ("fusion.json", lambda path: path.write_text('{"global": [1, 1]}'), "KeyError: 'raw_per_class'"),
    "bundle-truncated": ("bundle.json", lambda path: path.write_text('{"format": "tcl'), "JSONDecodeError"),
    "bundle-lacks-streams": ("bundle.json", lambda path: path.write_text(
        json.dumps({"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION})), "KeyError: 'streams'"),
}


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_model_file_is_one_line_and_exit_status_2(tiny_results, tiny_videos, tmp_path, capsys, damage):
    name, spoil, message = DAMAGES[damage]
    results = tmp_path / "results"
    shutil.copytree(tiny_results, results)
    if name == "bundle.json":  # a bundle's files (the streams are not read before bundle.json)
        results = tmp_path / "bundle"
        results.mkdir()
        for file in ("rgb.onnx", "flow.onnx", "fusion.json", "bundle.json"):
            (results / file).write_text("{}")
        shutil.copy(tiny_results / "fusion.json", results / "fusion.json")
    spoil(results / name)
    video = sorted((tiny_videos / "videos").rglob("*.avi"))[0]
    assert main(["predict", str(results), str(video), "--device", "cpu"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"tclsta predict: error: bad model file {results / name}: {message}"), error
    assert error.endswith("(damaged, or not written by this TCLSTA: delete it and re-run the stage that writes it)")


def test_damaged_collaborative_model_is_named(tmp_path):
    path = tmp_path / "collaborative.pt"
    path.write_bytes(b"PK\x03\x04" + bytes(100))  # a zip header, then nothing
    with pytest.raises(BadModelFileError, match=f"bad model file {path}: "):
        load_collaborative(path, torch.device("cpu"))
