"""Which fused model to use, the learned fusion weights or the collaborative model, chosen on the validation videos.

Both learn from the validation videos (``tclsta/evaluate.py``'s fusion weights, and the collaborative model with
``fit_on: val``), so their accuracy on those videos is no guide. Each is instead scored by k-fold cross-validation
on them, with the same folds (:func:`tclsta.collaborative.kfold`): the fusion weights are learned anew on each
fold's complement and scored on the fold; the collaborative model's cross-validated accuracy at its kept epoch is
in its checkpoint (``val_acc``, equal to ``cv_acc``; with ``fit_on: train`` the validation accuracy of its kept
epoch, already held out). The test videos are never read. ``results/<dataset>/model_choice.json``::

    {"best": "fusion" | "collaborative",
     "validation": {"fusion": <top-1>, "collaborative": <top-1>, "videos": <N>, "folds": <k>},
     "rule": "<how best was chosen, in words>"}
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tclsta.atomic import write_text_atomic
from tclsta.collaborative import kfold
from tclsta.config import DatasetConfig
from tclsta.evaluate import paired_scores
from tclsta.fusion import learn_fusion
from tclsta.inference import read_scores
from tclsta.settings import StageSettings

MODEL_CHOICE_SETTINGS = StageSettings("model-choice", fusion=("steps", "lr", "per_class_penalty"), collaborative=("folds", "seed"))
MODELS = ("fusion", "collaborative")
RULE = ("the collaborative model if its {folds}-fold cross-validated top-1 on the validation videos is higher than "
        "that of the learned fusion weights (learned on the other folds, scored on each), else the fusion weights")


def cross_validated_fusion(rgb_scores: Path, flow_scores: Path, config: DatasetConfig) -> tuple[float, int]:
    """Top-1 of the fusion weights over the validation videos, each scored by weights learned without its fold;
    and the number of those videos."""
    rgb, flow, labels, video_ids = paired_scores(read_scores(rgb_scores), read_scores(flow_scores), "val")
    if not len(labels):
        raise RuntimeError(f"no validation videos scored by both streams in {rgb_scores} and {flow_scores}")
    correct = 0
    for held_out in kfold(video_ids, config.collaborative.folds, config.collaborative.seed):
        kept = torch.ones(len(labels), dtype=torch.bool)
        kept[held_out] = False
        weights = learn_fusion(rgb[kept], flow[kept], labels[kept], config.fusion)
        correct += int((weights.fuse(rgb[held_out], flow[held_out]).argmax(1) == labels[held_out]).sum())
    return correct / len(labels), len(labels)


def choose_model(rgb_scores: Path, flow_scores: Path, collaborative_checkpoint: Path, config: DatasetConfig,
                 out_path: Path) -> dict:
    """Write (and return) model_choice.json, the format in the module docstring."""
    fusion, videos = cross_validated_fusion(rgb_scores, flow_scores, config)
    state = torch.load(collaborative_checkpoint, map_location="cpu", weights_only=True)
    collaborative = state["val_acc"]  # cross-validated when it was fitted on the validation videos
    rule = RULE.format(folds=config.collaborative.folds)
    if state["config"]["fit_on"] == "train":
        rule += " (the collaborative model, fitted on the training videos, by its validation top-1)"
    choice = {"best": "collaborative" if collaborative > fusion else "fusion",
              "validation": {"fusion": fusion, "collaborative": collaborative, "videos": videos,
                             "folds": config.collaborative.folds},
              "rule": rule}
    write_text_atomic(out_path, json.dumps(choice, indent=2))
    return choice
