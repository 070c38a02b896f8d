"""Real training steps on the tiny shards (stages, resume after kill -9, two processes with gloo), then
scoring, fusion and evaluation."""

import dataclasses
import json
import logging
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader

from conftest import tiny_settings
from tclsta.data.dataset import model_input
from tclsta.data.manifest import class_names, read_manifest
from tclsta.evaluate import evaluate, fuse_streams
from tclsta.inference import build_model, inference_clip_spec, load_checkpoint, score_stream, split_dataset
from tclsta.train import (
    Runtime,
    make_optimizer,
    run_epoch,
    sample_steps,
    set_stage,
    train_clip_spec,
    train_mode,
    train_stream,
    training_stages,
)


def test_train_score_fuse_evaluate(tiny_dataset, tmp_path):
    manifest = read_manifest(tiny_dataset.manifest_path)
    config = tiny_dataset.config
    for stream in ("rgb", "flow"):
        train_stream(tiny_dataset.shards, manifest, stream, config.model, config.train,
                     tmp_path / f"{stream}.pt", tmp_path / f"{stream}_history.csv")
        history = pd.read_csv(tmp_path / f"{stream}_history.csv")
        assert history["epoch"].tolist() == [1, 2]
        assert history["train_loss"].notna().all() and history["val_acc"].between(0, 1).all()
        events = EventAccumulator(str(tmp_path / f"{stream}_tensorboard")).Reload()  # TensorBoard's own reader
        assert [event.step for event in events.Scalars("val_acc")] == [1, 2]
        np.testing.assert_allclose([event.value for event in events.Scalars("val_acc")], history["val_acc"], rtol=1e-6)
        model, model_config, state = load_checkpoint(tmp_path / f"{stream}.pt", torch.device("cpu"))
        assert state["modality"] == stream and state["classes"] == class_names(manifest)
        assert model_config == config.model
        score_stream(tmp_path / f"{stream}.pt", tiny_dataset.shards, manifest, config.train, tmp_path / f"{stream}.csv")
        scores = pd.read_csv(tmp_path / f"{stream}.csv")
        assert sorted(scores["split"].unique()) == ["test", "val"]
        assert len(scores) == 16 and scores.filter(like="score_").shape[1] == 4

    fuse_streams(tmp_path / "rgb.csv", tmp_path / "flow.csv", config.fusion, class_names(manifest), tmp_path / "fusion.json")
    fusion = json.loads((tmp_path / "fusion.json").read_text())
    assert abs(fusion["global"]["rgb"] + fusion["global"]["flow"] - 1) < 1e-6
    evaluate(manifest, tmp_path / "rgb.csv", tmp_path / "flow.csv", tmp_path / "fusion.json", config.fusion,
             tmp_path / "metrics.json", "tiny")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["results"]) == {"rgb", "flow", "fused", "late_fusion"}
    assert metrics["num_test_videos_scored"] == 8
    for result in metrics["results"].values():
        assert 0 <= result["top1"] <= 1 and result["top5"] == 1  # 4 classes: every class is in the top 5
    assert sum(map(sum, metrics["confusion"]["fused"])) == 8


def test_training_is_deterministic_on_cpu(tiny_dataset, tmp_path):
    manifest = read_manifest(tiny_dataset.manifest_path)
    config = tiny_dataset.config
    for run in ("a", "b"):
        train_stream(tiny_dataset.shards, manifest, "rgb", config.model, config.train,
                     tmp_path / f"{run}.pt", tmp_path / f"{run}.csv")
    a, b = (pd.read_csv(tmp_path / f"{run}.csv").drop(columns=["seconds", "data_seconds"]) for run in ("a", "b"))
    pd.testing.assert_frame_equal(a, b)


def test_three_stages_train_their_parts_only(tiny_dataset, tmp_path):
    manifest = read_manifest(tiny_dataset.manifest_path)
    config = tiny_dataset.config
    stages = ({"name": "spatial", "epochs": 1, "lr": 0.003}, {"name": "temporal", "epochs": 2, "lr": 0.002},
              {"name": "joint", "epochs": 1, "lr": 0.0001})
    train_config = dataclasses.replace(config.train, stages=stages, lr_schedule="constant")
    train_stream(tiny_dataset.shards, manifest, "rgb", config.model, train_config, tmp_path / "rgb.pt", tmp_path / "rgb.csv")
    history = pd.read_csv(tmp_path / "rgb.csv")
    assert history["stage"].tolist() == ["spatial", "temporal", "temporal", "joint"]
    assert history["lr"].tolist() == [0.003, 0.002, 0.002, 0.0001]
    assert json.loads((tmp_path / "rgb.json").read_text())[0]["stage"] == "spatial"
    assert not (tmp_path / "rgb.pt.resume").exists()  # the resume state goes once training is over

    # The temporal stage changes the temporal head only: backbone weights and BatchNorm statistics stay.
    model = build_model(config.model, "rgb", 4)
    trainable = set_stage(model, training_stages(train_config)[1])
    assert {id(p) for p in trainable} == {id(p) for p in model.temporal.parameters()}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = DataLoader(split_dataset(manifest, ["train"], tiny_dataset.shards, train_clip_spec("rgb", config.model.flow_stack, train_config), 0),
                        batch_size=4)
    stage = training_stages(train_config)[1]
    train_mode(model, stage)
    optimizer = make_optimizer(trainable, stage, train_config)
    run_epoch(model, loader, Runtime(torch.device("cpu")), stage, train_config, optimizer, torch.amp.GradScaler(enabled=False))
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("temporal.") for k in changed)


@pytest.mark.parametrize("option", [{"model": {"class_source": "soft"}}, {"model": {"attention_temperature": "learned"}},
                                    {"model": {"detach_attention": True}}, {"train": {"variable_steps": True}}],
                         ids=["soft", "learned_temperature", "detach", "variable_steps"])
def test_attention_and_step_options_train(tiny_dataset, option):
    """One real training epoch (joint stage) of the rgb stream with each option: every part learns, the entropy is recorded."""
    manifest = read_manifest(tiny_dataset.manifest_path)
    config = tiny_dataset.config
    model_config = dataclasses.replace(config.model, **option.get("model", {}))
    train_config = dataclasses.replace(config.train, **option.get("train", {}))
    spec = train_clip_spec("rgb", model_config.flow_stack, train_config)
    assert spec.num_frames == (train_config.test_frames if train_config.variable_steps else train_config.train_frames)
    torch.manual_seed(0)
    model = build_model(model_config, "rgb", 4)
    stage = training_stages(train_config)[0]
    optimizer = make_optimizer(set_stage(model, stage), stage, train_config)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = DataLoader(split_dataset(manifest, ["train"], tiny_dataset.shards, spec, 0), batch_size=4)
    train_mode(model, stage)
    result = run_epoch(model, loader, Runtime(torch.device("cpu")), stage, train_config, optimizer, torch.amp.GradScaler(enabled=False))
    assert np.isfinite(result["loss"]) and 0 < result["attention_entropy"] <= 1
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], model.state_dict()[k])}
    assert changed == {"backbone", "spatial", "temporal", "frame_classifier"}
    if model_config.attention_temperature == "learned":
        assert model.spatial.log_temperature.item() != 0.0


def test_sample_steps_keeps_an_ordered_subset():
    clips = torch.arange(6).view(1, 6, 1, 1, 1).expand(2, 6, 3, 4, 5)
    torch.manual_seed(0)
    counts = set()
    for _ in range(20):
        kept = sample_steps(clips, 3)
        steps = kept[0, :, 0, 0, 0].tolist()
        assert kept.shape[0] == 2 and kept.shape[2:] == (3, 4, 5) and steps == sorted(set(steps)) and len(steps) >= 3
        counts.add(len(steps))
    assert counts == {3, 4, 5, 6}


def test_ten_crop_scores_average_mirrored_corner_crops(tiny_dataset, tmp_path):
    manifest = read_manifest(tiny_dataset.manifest_path)
    config = tiny_dataset.config
    train_stream(tiny_dataset.shards, manifest, "flow", config.model, config.train, tmp_path / "flow.pt", tmp_path / "h.csv")
    scores = {}
    for crops in (1, 10):
        train_config = dataclasses.replace(config.train, test_crops=crops)
        spec = inference_clip_spec("flow", config.model.flow_stack, train_config)
        clip, _ = split_dataset(manifest, ["test"], tiny_dataset.shards, spec, 0)[0]
        assert clip.shape == ((10,) if crops == 10 else ()) + (4, 4, 40, 56)
        score_stream(tmp_path / "flow.pt", tiny_dataset.shards, manifest, train_config, tmp_path / f"{crops}.csv")
        scores[crops] = pd.read_csv(tmp_path / f"{crops}.csv").filter(like="score_").to_numpy()
    assert scores[1].shape == scores[10].shape and not np.allclose(scores[1], scores[10])
    views = model_input(clip, "cpu")  # the last one: 10 crops of a flow clip, in [-1, 1]
    torch.testing.assert_close(views[5][:, 1::2], views[0][:, 1::2].flip(-1))
    torch.testing.assert_close(views[5][:, 0::2], -views[0][:, 0::2].flip(-1))


def train_command(tiny_dataset, tmp_path: Path, name: str, stages: list[dict], launcher: list[str]) -> list[str]:
    """The command the train_stream rule runs, on the tiny dataset."""
    settings = tiny_settings(tiny_dataset.root)
    settings["train"]["stages"] = stages
    return [*launcher, "-m", "tclsta", "train", "--settings", json.dumps(settings), "--threads", "1", "--stream", "rgb",
            "--manifest", str(tiny_dataset.manifest_path), "--shards", *map(str, tiny_dataset.shards),
            "--output", str(tmp_path / f"{name}.pt"), "--history", str(tmp_path / f"{name}.csv")]


def read_history(tmp_path: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(tmp_path / f"{name}.csv").drop(columns=["seconds", "data_seconds"])


def test_training_killed_mid_epoch_resumes_to_the_same_result(tiny_dataset, tmp_path):
    stages = [{"name": "spatial", "epochs": 3, "lr": 0.003}, {"name": "joint", "epochs": 5, "lr": 0.001}]
    python = [sys.executable]
    subprocess.run(train_command(tiny_dataset, tmp_path, "whole", stages, python), check=True, timeout=300)

    epoch_seconds = pd.read_csv(tmp_path / "whole.csv")["seconds"].median()
    rng, last = random.Random(0), tmp_path / "rgb.pt.resume" / "last.pt"
    # Three interruptions, each after one more epoch ended: early, midway and late in the next epoch (seeded).
    for low, high in ((0.05, 0.3), (0.35, 0.65), (0.7, 0.95)):
        saved = last.stat().st_mtime_ns if last.exists() else None
        job = subprocess.Popen(train_command(tiny_dataset, tmp_path, "rgb", stages, python), stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while (last.stat().st_mtime_ns if last.exists() else None) == saved and job.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(low, high) * epoch_seconds)
        job.kill()
        _, stderr = job.communicate()
        assert job.returncode == -signal.SIGKILL, f"training ended before it was killed:\n{stderr[-2000:]}"
        assert not (tmp_path / "rgb.pt").exists() and not (tmp_path / "rgb.csv").exists()
    resumed = subprocess.run(train_command(tiny_dataset, tmp_path, "rgb", stages, python), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming after epoch" in resumed.stderr
    pd.testing.assert_frame_equal(read_history(tmp_path, "whole"), read_history(tmp_path, "rgb"), check_exact=True)
    whole, again = (torch.load(tmp_path / f"{name}.pt", weights_only=True) for name in ("whole", "rgb"))
    assert whole["epoch"] == again["epoch"]
    for key, value in whole["state_dict"].items():
        assert torch.equal(value, again["state_dict"][key]), key


def test_two_processes_with_gloo_match_one_process(tiny_dataset, tmp_path):
    stages = [{"name": "joint", "epochs": 2, "lr": 0.003}]
    subprocess.run(train_command(tiny_dataset, tmp_path, "one", stages, [sys.executable]), check=True, timeout=300)
    torchrun = [str(Path(sys.executable).with_name("torchrun")), "--standalone", "--nproc_per_node", "2"]
    two = subprocess.run(train_command(tiny_dataset, tmp_path, "two", stages, torchrun), capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 process(es)" in two.stderr
    # Each process sees half of every batch of the same global sample order; only BatchNorm statistics
    # (per process) and summation order differ.
    one, two = read_history(tmp_path, "one"), read_history(tmp_path, "two")
    pd.testing.assert_frame_equal(one[["epoch", "stage", "lr"]], two[["epoch", "stage", "lr"]])
    for column in ("train_loss", "val_loss"):
        np.testing.assert_allclose(one[column], two[column], rtol=0.1, err_msg=column)
    np.testing.assert_allclose(one["val_acc"], two["val_acc"], atol=0.25)


def test_damaged_resume_state_is_moved_aside_and_training_starts_over(tiny_dataset, tmp_path, caplog):
    damaged = tmp_path / "rgb.pt.resume" / "last.pt"
    damaged.parent.mkdir()
    damaged.write_bytes(b"PK\x03\x04" + bytes(60))  # a zip header, then nothing: a state cut short
    config = tiny_dataset.config
    one_epoch = dataclasses.replace(config.train, stages=({"name": "joint", "epochs": 1, "lr": 0.003},))
    with caplog.at_level(logging.WARNING, logger="tclsta.train"):
        train_stream(tiny_dataset.shards, read_manifest(tiny_dataset.manifest_path), "rgb", config.model, one_epoch,
                     tmp_path / "rgb.pt", tmp_path / "rgb.csv")
    assert f"bad model file {damaged}: " in caplog.text
    assert f"moved to {tmp_path / 'rgb.pt.resume.damaged'}, training starts again from the first epoch" in caplog.text
    assert (tmp_path / "rgb.pt.resume.damaged" / "last.pt").read_bytes() == b"PK\x03\x04" + bytes(60)
    assert pd.read_csv(tmp_path / "rgb.csv")["epoch"].tolist() == [1]
    assert (tmp_path / "rgb.pt").is_file() and not damaged.parent.exists()
