"""Real training steps on the tiny shards, then scoring, fusion and evaluation."""

import json

import pandas as pd
import torch

from tclsta.data.manifest import class_names, read_manifest
from tclsta.evaluate import evaluate, fuse_streams, score_stream
from tclsta.train import load_checkpoint, train_stream


def test_train_score_fuse_evaluate(tiny_dataset, tmp_path):
    manifest = read_manifest(tiny_dataset.manifest_path)
    config = tiny_dataset.config
    for stream in ("rgb", "flow"):
        train_stream(tiny_dataset.shards, manifest, stream, config.model, config.train,
                     tmp_path / f"{stream}.pt", tmp_path / f"{stream}_history.csv")
        history = pd.read_csv(tmp_path / f"{stream}_history.csv")
        assert history["epoch"].tolist() == [1, 2]
        assert history["train_loss"].notna().all() and history["val_acc"].between(0, 1).all()
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
        assert 0 <= result["top1"] <= result["top5"] <= 1
    assert sum(map(sum, metrics["confusion"]["fused"])) == 8


def test_training_is_deterministic_on_cpu(tiny_dataset, tmp_path):
    manifest = read_manifest(tiny_dataset.manifest_path)
    config = tiny_dataset.config
    for run in ("a", "b"):
        train_stream(tiny_dataset.shards, manifest, "rgb", config.model, config.train,
                     tmp_path / f"{run}.pt", tmp_path / f"{run}.csv")
    a, b = (pd.read_csv(tmp_path / f"{run}.csv").drop(columns="seconds") for run in ("a", "b"))
    pd.testing.assert_frame_equal(a, b)
