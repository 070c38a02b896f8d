"""Bad input met by the stages: every bad video of the dataset issue at once, videos changed
between runs, and checkpoints carrying pickled objects."""

from __future__ import annotations

import logging
import os
import pickle
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
from tclsta.errors import FileError
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
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
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
def test_every_load_refuses_a_planted_payload(tmp_path, monkeypatch, loader):
    """Each place the project loads weights from, at run time, with a file that would run code."""
    monkeypatch.chdir(tmp_path)  # model.pretrained: imagenet reads resources/<torchvision file name>
    marker = tmp_path / "code_ran"
    plant(tmp_path / PLANTED[loader], marker)
    with pytest.raises((pickle.UnpicklingError, FileError)) as refused:
        LOADERS[loader](tmp_path)
    assert not marker.exists()
    if loader == "ImageNet weights in resources/":  # refused for its hash before torch.load is reached
        assert "SHA-256" in str(refused.value) and "delete the file" in str(refused.value)
    else:
        assert "Weights only load failed" in str(refused.value)
