"""A real results folder of the tiny dataset, laid out as the pipeline writes ``results/<dataset>/``.

Both streams are trained for real (a few seconds on a CPU), then scored, fused and evaluated, so
the report and the attention view see what the pipeline would give them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from tclsta.config import section_dict
from tclsta.data.manifest import class_names, read_manifest
from tclsta.evaluate import evaluate, fuse_streams
from tclsta.inference import score_stream
from tclsta.predict import PREDICT_SETTINGS
from tclsta.train import train_stream


def build_tiny_results(tiny_dataset, out: Path) -> Path:
    """Train, score, fuse and evaluate the tiny dataset into ``out``; returns ``out``."""
    manifest = read_manifest(tiny_dataset.manifest_path)
    config = tiny_dataset.config
    shutil.copy(tiny_dataset.manifest_path, out / "manifest.csv")
    models, scores = out / "models", out / "scores"
    for stream in ("rgb", "flow"):
        train_stream(tiny_dataset.shards, manifest, stream, config.model, config.train,
                     models / f"{stream}.pt", models / f"{stream}_history.csv", recorded_settings(config))
        score_stream(models / f"{stream}.pt", tiny_dataset.shards, manifest, config.train, scores / f"{stream}.csv")
    fuse_streams(scores / "rgb.csv", scores / "flow.csv", config.fusion, class_names(manifest), out / "fusion.json")
    evaluate(manifest, scores / "rgb.csv", scores / "flow.csv", out / "fusion.json", config.fusion,
             out / "metrics.json", config.name)
    return out


def recorded_settings(config) -> dict:
    """What the train command records in a checkpoint for prediction (``PREDICT_SETTINGS``)."""
    sections = {name: section_dict(getattr(config, name)) for name in ("preprocess", "flow", "train")}
    return PREDICT_SETTINGS.select({"name": config.name, **sections})
