"""The collaborative model: co-attention shapes and guidance, the feature cache, real training on tiny features."""

import dataclasses
import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from tclsta.collaborative import kfold, load_collaborative, train_collaborative
from tclsta.config import CollaborativeConfig, DatasetConfig, ModelConfig, TrainConfig
from tclsta.data.manifest import read_manifest
from tclsta.evaluate import evaluate, fuse_streams
from tclsta.inference import read_scores, score_stream
from tclsta.model_choice import choose_model
from tclsta.features import extract_features, feature_splits, read_features
from tclsta.models import CollaborativeModel
from tclsta.train import train_stream

TINY_COLLABORATIVE = CollaborativeConfig(epochs=8, hidden=16, batch_size=4, dropout=0.0, fit_on="train")


def train_streams(dataset, folder: Path, model: ModelConfig | None = None, train: TrainConfig | None = None) -> None:
    """Train, score and cache the features of both streams into ``folder``/{models,scores,features} (the results layout)."""
    config: DatasetConfig = dataset.config
    manifest = read_manifest(dataset.manifest_path)
    for stream in ("rgb", "flow"):
        checkpoint = folder / "models" / f"{stream}.pt"
        train_stream(dataset.shards, manifest, stream, model or config.model, train or config.train, checkpoint,
                     folder / "models" / f"{stream}_history.csv")
        score_stream(checkpoint, dataset.shards, manifest, config.train, folder / "scores" / f"{stream}.csv")
        extract_features(checkpoint, dataset.shards, manifest, config.train, folder / "features" / f"{stream}.h5")


def train_collaborative_into(features: Path, out: Path, config: CollaborativeConfig = TINY_COLLABORATIVE) -> None:
    """Train the collaborative model on ``features``/{rgb,flow}.h5 into ``out``/{models,scores} (the results layout)."""
    train_collaborative(features / "rgb.h5", features / "flow.h5", config, "cpu", out / "models" / "collaborative.pt",
                        out / "models" / "collaborative_history.csv", out / "scores" / "collaborative.csv")


@pytest.mark.parametrize("mutual_guidance", [True, False])
def test_model_shapes_and_guidance(mutual_guidance):
    torch.manual_seed(0)
    model = CollaborativeModel(static_dim=12, motion_dim=10, num_classes=5, hidden=8, dropout=0.0,
                               mutual_guidance=mutual_guidance).eval()
    static, motion = torch.randn(3, 7, 12), torch.randn(3, 6, 10)
    output = model(static, motion)
    assert output.logits.shape == (3, 5)
    assert output.static_attention.shape == (3, 7) and output.motion_attention.shape == (3, 6)
    for weights in (output.static_attention, output.motion_attention):
        torch.testing.assert_close(weights.sum(1), torch.ones(3))

    # With mutual guidance the static attention depends on the motion stream; without, it does not.
    other = model(static, torch.randn(3, 6, 10))
    moved = not torch.allclose(output.static_attention, other.static_attention)
    assert moved == mutual_guidance


def test_feature_cache_round_trip_and_collaborative_training(tiny_dataset, tmp_path):
    manifest = read_manifest(tiny_dataset.manifest_path)
    train_streams(tiny_dataset, tmp_path)

    rgb, flow = read_features(tmp_path / "features" / "rgb.h5"), read_features(tmp_path / "features" / "flow.h5")
    assert rgb.stream == "rgb" and flow.stream == "flow"
    assert sorted(rgb.video_ids) == sorted(manifest["video_id"]) and rgb.video_ids == flow.video_ids
    expected_split = manifest.set_index("video_id").loc[rgb.video_ids]
    assert rgb.splits == expected_split["split"].tolist() and rgb.labels.tolist() == expected_split["label"].tolist()
    frames = tiny_dataset.config.train.test_frames
    assert rgb.features.shape[:2] == (len(manifest), frames) and rgb.features.dtype == np.float32
    assert np.isfinite(rgb.features).all() and rgb.features.std() > 0

    train_collaborative_into(tmp_path / "features", tmp_path)
    history = pd.read_csv(tmp_path / "models" / "collaborative_history.csv")
    assert history["epoch"].tolist() == list(range(1, 9))
    assert history["train_loss"].iloc[-1] < history["train_loss"].iloc[0]  # real optimisation steps
    model, config, state = load_collaborative(tmp_path / "models" / "collaborative.pt", torch.device("cpu"))
    best = history.sort_values(["val_acc", "val_loss"], ascending=[False, True]).iloc[0]  # selection on val only
    assert config == TINY_COLLABORATIVE and state["epoch"] == best["epoch"] and state["val_acc"] == best["val_acc"]
    assert state["dims"] == [rgb.features.shape[-1], flow.features.shape[-1]]

    # The scores CSV has the stream scores' format and agrees with the reloaded model.
    scores = read_scores(tmp_path / "scores" / "collaborative.csv")
    stream_scores = read_scores(tmp_path / "scores" / "rgb.csv")
    assert list(scores.columns) == [c for c in stream_scores.columns if not c.startswith(("lstm_", "frames_"))]
    assert sorted(scores["video_id"]) == sorted(stream_scores["video_id"])
    row = rgb.video_ids.index(scores["video_id"].iloc[0])
    with torch.no_grad():
        logits = model(torch.from_numpy(rgb.features[row : row + 1]), torch.from_numpy(flow.features[row : row + 1])).logits
    np.testing.assert_allclose(scores.filter(like="score_").iloc[0].to_numpy(), logits[0].numpy(), rtol=1e-4, atol=1e-5)

    config = tiny_dataset.config
    fuse_streams(tmp_path / "scores" / "rgb.csv", tmp_path / "scores" / "flow.csv", config.fusion,
                 rgb.classes, tmp_path / "fusion.json")
    evaluate(manifest, tmp_path / "scores" / "rgb.csv", tmp_path / "scores" / "flow.csv", tmp_path / "fusion.json",
             config.fusion, tmp_path / "metrics.json", "tiny", collaborative_scores=tmp_path / "scores" / "collaborative.csv")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["results"]) == {"rgb", "flow", "fused", "late_fusion", "collaborative"}
    assert sum(map(sum, metrics["confusion"]["collaborative"])) == 8

    # The fused model to use, from validation only: the fusion weights learned on 2 of 3 folds, scored on the third.
    choice = choose_model(tmp_path / "scores" / "rgb.csv", tmp_path / "scores" / "flow.csv",
                          tmp_path / "models" / "collaborative.pt", config, tmp_path / "model_choice.json")
    assert json.loads((tmp_path / "model_choice.json").read_text()) == choice
    validation = choice["validation"]
    assert choice["best"] == ("collaborative" if validation["collaborative"] > validation["fusion"] else "fusion")
    assert validation["collaborative"] == state["val_acc"] and validation["videos"] == 8 and 0 <= validation["fusion"] <= 1


def test_collaborative_needs_validation_videos(tmp_path):
    features = tmp_path / "features"
    features.mkdir()
    for stream, dims in (("rgb", 6), ("flow", 4)):
        with h5py.File(features / f"{stream}.h5", "w") as file:
            file.attrs.update(format="tclsta-features", version=1, stream=stream, classes=json.dumps(["a", "b"]),
                              checkpoint_epoch=1)
            file.create_dataset("video_ids", data=["v0", "v1"], dtype=h5py.string_dtype())
            file.create_dataset("splits", data=["train", "test"], dtype=h5py.string_dtype())
            file.create_dataset("labels", data=np.array([0, 1]))
            file.create_dataset("features", data=np.zeros((2, 3, dims), np.float32))
    with pytest.raises(RuntimeError, match="1 training and 0 validation videos"):
        train_collaborative_into(features, tmp_path, dataclasses.replace(TINY_COLLABORATIVE, epochs=1))


def write_features(features: Path, splits: list[str], labels: np.ndarray, separable: np.ndarray, seed: int = 0) -> None:
    """rgb/flow feature files of videos v0, v1, ... with random features, shifted by class where ``separable``."""
    features.mkdir()
    rng = np.random.default_rng(seed)
    for stream, dims in (("rgb", 6), ("flow", 4)):
        values = rng.normal(size=(len(splits), 3, dims)).astype(np.float32)
        values[separable, :, 0] += np.where(labels[separable] == 1, 3.0, -3.0)[:, None]
        with h5py.File(features / f"{stream}.h5", "w") as file:
            file.attrs.update(format="tclsta-features", version=1, stream=stream, classes=json.dumps(["a", "b"]), checkpoint_epoch=1)
            file.create_dataset("video_ids", data=[f"v{i}" for i in range(len(splits))], dtype=h5py.string_dtype())
            file.create_dataset("splits", data=splits, dtype=h5py.string_dtype())
            file.create_dataset("labels", data=labels)
            file.create_dataset("features", data=values)


def test_fit_on_val_learns_from_validation_features_only(tmp_path):
    """Validation features separate the classes, training features are noise: fitting on val learns; the epoch kept
    is the one with the best cross-validated accuracy, and so is the checkpoint's cv_acc."""
    splits = ["train"] * 20 + ["val"] * 20 + ["test"] * 4
    labels = np.array([i % 2 for i in range(len(splits))])
    features = tmp_path / "features"
    write_features(features, splits, labels, np.array([s != "train" for s in splits]))  # separable outside training
    train_collaborative_into(features, tmp_path, dataclasses.replace(TINY_COLLABORATIVE, fit_on="val", epochs=30, folds=4))
    history = pd.read_csv(tmp_path / "models" / "collaborative_history.csv")
    assert history["val_loss"].iloc[-1] < history["val_loss"].iloc[0] / 2 and history["val_acc"].iloc[-1] == 1.0
    assert history["train_acc"].max() < 0.9  # the training videos' noise was never fitted
    _, _, state = load_collaborative(tmp_path / "models" / "collaborative.pt", torch.device("cpu"))
    best = history.sort_values(["cv_acc", "cv_loss"], ascending=[False, True]).iloc[0]
    assert state["epoch"] == best["epoch"] and state["cv_acc"] == best["cv_acc"] == 1.0
    scores = read_scores(tmp_path / "scores" / "collaborative.csv")
    test = scores[scores["split"] == "test"]
    assert (test.filter(like="score_").to_numpy().argmax(1) == test["label"].to_numpy()).all()


def test_fit_on_val_needs_no_training_features(tmp_path):
    """The features stage skips the training videos when the model is fitted on val: the model trains and scores
    all the same, and the history leaves the training videos' columns empty; fitted on train, it needs them."""
    assert feature_splits("val") == ("val", "test") and feature_splits("train") == ("train", "val", "test")
    splits = ["val"] * 20 + ["test"] * 4
    labels = np.array([i % 2 for i in range(len(splits))])
    write_features(tmp_path / "features", splits, labels, np.ones(len(splits), dtype=bool))
    train_collaborative_into(tmp_path / "features", tmp_path, dataclasses.replace(TINY_COLLABORATIVE, fit_on="val", folds=4))
    history = pd.read_csv(tmp_path / "models" / "collaborative_history.csv")
    assert history[["train_loss", "train_acc"]].isna().all().all() and history["val_acc"].iloc[-1] == 1.0
    assert len(read_scores(tmp_path / "scores" / "collaborative.csv")) == len(splits)
    with pytest.raises(RuntimeError, match="0 training and 20 validation videos"):
        train_collaborative_into(tmp_path / "features", tmp_path / "train", dataclasses.replace(TINY_COLLABORATIVE, fit_on="train"))


def test_cross_validation_is_honest_where_fitting_is_not(tmp_path):
    """On noise the collaborative model fits its validation videos well above chance; its cross-validated accuracy,
    the one it is chosen by and compared with, stays near chance (each fold is scored by a model that never saw it)."""
    splits = ["train"] * 8 + ["val"] * 40 + ["test"] * 4
    labels = np.random.default_rng(1).integers(0, 2, len(splits))
    features = tmp_path / "features"
    write_features(features, splits, labels, np.zeros(len(splits), dtype=bool))
    config = dataclasses.replace(TINY_COLLABORATIVE, fit_on="val", epochs=40, hidden=32, lr=0.01, folds=4)
    train_collaborative_into(features, tmp_path, config)
    history = pd.read_csv(tmp_path / "models" / "collaborative_history.csv")
    _, _, state = load_collaborative(tmp_path / "models" / "collaborative.pt", torch.device("cpu"))
    assert history["val_acc"].max() >= 0.8  # fitted: memorised
    assert history["cv_acc"].max() <= 0.7 and state["cv_acc"] == history["cv_acc"].max()


def test_kfold_depends_on_video_ids_only():
    ids = [f"v{i}" for i in range(10)]
    folds = kfold(ids, 3, seed=0)
    assert sorted(torch.cat(folds).tolist()) == list(range(10)) and [len(f) for f in folds] == [4, 3, 3]
    shuffled = ids[::-1]
    again = kfold(shuffled, 3, seed=0)
    assert [sorted(ids[i] for i in fold) for fold in folds] == [sorted(shuffled[i] for i in fold) for fold in again]
