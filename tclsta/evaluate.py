"""Fusing the streams' scores (``tclsta.inference`` writes them) and the accuracy metrics of the test split
(of a multi-label dataset: average precision and mAP, :mod:`tclsta.multilabel`).

Every accuracy comes with a 95% bootstrap confidence interval over the test
videos (:class:`Bootstrap`: ``BOOTSTRAP_SAMPLES`` resamples of the test videos
with replacement, drawn from a fixed seed, so reruns give the same intervals).
Models scored on the same videos share the resamples, which makes the
interval of a difference between two models a paired one. Where every video is
right (or every one wrong) each resample gives the same accuracy and the
percentile interval collapses to a point (100.0 [100.0, 100.0]); there an
accuracy's interval is the exact Clopper-Pearson one instead
(:func:`accuracy_interval`: 32 of 32 right gives [89.1, 100]).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from tclsta.atomic import write_text_atomic
from tclsta.config import FusionConfig
from tclsta.data.manifest import class_names
from tclsta.errors import model_file
from tclsta.fusion import FusionWeights, late_fusion, learn_fusion
from tclsta.inference import read_scores
from tclsta.multilabel import Objective, multilabel_metrics, per_class_key
from tclsta.settings import StageSettings

FUSE_SETTINGS = StageSettings("fuse", fusion=("steps", "lr", "per_class_penalty"))
# The demo's expected accuracy ceilings depend on its format and classes.
# model.stream_score: which stream score scoring used (reported with each source's accuracy)
EVALUATE_SETTINGS = StageSettings("evaluate", entry=("format",), demo=("classes_per_kind", "kind"), fusion=("late_fusion_weights",),
                                  model=("stream_score", "rgb", "flow"))
STREAMS = ("rgb", "flow")
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Bootstrap:
    """Resamples of N test videos with replacement, as counts: ``weights[b, i]`` is how often video i is drawn in
    resample b. An accuracy over the videos becomes a weighted mean per resample."""

    weights: np.ndarray  # (B, N)

    @classmethod
    def draw(cls, num_videos: int, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> Bootstrap:
        rng = np.random.default_rng(seed)
        drawn = rng.integers(0, num_videos, size=(samples, num_videos))  # (B, N) video indices
        weights = np.zeros((samples, num_videos))
        np.add.at(weights, (np.arange(samples)[:, None], drawn), 1)
        return cls(weights)

    def per_class_accuracy(self, correct: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """(B, K) per-class accuracy in each resample; NaN where a resample holds no video of the class."""
        members = np.eye(num_classes)[labels]  # (N, K)
        totals = self.weights @ members  # (B, K)
        hits = self.weights @ (members * correct[:, None])  # (B, K)
        return np.divide(hits, totals, out=np.full_like(hits, np.nan), where=totals > 0)

    def accuracy_samples(self, correct: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, np.ndarray]:
        """Top-1 (or top-5: ``correct`` says which) and mean class accuracy in each resample, (B,) each."""
        with np.errstate(all="ignore"):
            mean_class = np.nanmean(self.per_class_accuracy(correct, labels, num_classes), axis=1)
        return {"accuracy": self.weights @ correct / self.weights.sum(1), "mean_class_accuracy": mean_class}


def interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> list[float]:
    """Percentile interval [low, high] of bootstrap samples (along the first axis); NaN-free columns only."""
    tail = 100 * (1 - confidence) / 2
    low, high = np.nanpercentile(samples, [tail, 100 - tail], axis=0)
    return [float(low), float(high)] if np.ndim(low) == 0 else [low.tolist(), high.tolist()]


def exact_interval(correct: np.ndarray, confidence: float = CONFIDENCE) -> list[float] | None:
    """Clopper-Pearson interval of an accuracy over n videos that are all right, [(a/2)^(1/n), 1], or all wrong,
    [0, 1 - (a/2)^(1/n)] (a = 1 - confidence); None for a mixed (or empty) ``correct``."""
    n = len(correct)
    if n == 0 or 0 < correct.sum() < n:
        return None
    tail = ((1 - confidence) / 2) ** (1 / n)
    return [tail, 1.0] if correct.all() else [0.0, 1.0 - tail]


def accuracy_interval(samples: np.ndarray, correct: np.ndarray) -> list[float]:
    """An accuracy's interval: the bootstrap percentile one of its ``samples``, or where the bootstrap collapses
    (``correct``, the 0/1 outcome per video, all 1 or all 0) the exact one (:func:`exact_interval`)."""
    return exact_interval(correct) or interval(samples)


def excludes_zero(bounds: Sequence[float]) -> bool:
    """Whether a difference's interval lies entirely on one side of zero: the difference is distinguishable."""
    return bounds[0] > 0 or bounds[1] < 0


def paired_scores(rgb: pd.DataFrame, flow: pd.DataFrame, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """RGB and flow logits of the videos of ``split`` that both streams scored, aligned by video id."""
    merged = rgb[rgb["split"] == split].merge(flow[flow["split"] == split], on=["video_id", "split", "label"], suffixes=("_rgb", "_flow"))
    k = len(rgb.filter(like="score_").columns)
    rgb_logits = torch.tensor(merged[[f"score_{i}_rgb" for i in range(k)]].to_numpy(), dtype=torch.float32)
    flow_logits = torch.tensor(merged[[f"score_{i}_flow" for i in range(k)]].to_numpy(), dtype=torch.float32)
    return rgb_logits, flow_logits, torch.tensor(merged["label"].to_numpy()), merged["video_id"].tolist()


def classification_metrics(scores: torch.Tensor, labels: torch.Tensor, num_classes: int,
                           bootstrap: Bootstrap | None = None) -> dict:
    """Top-1, top-5, mean class accuracy, per-class accuracy and the confusion matrix (rows: true).

    With ``bootstrap`` (drawn for these videos) each accuracy also gets its interval, as ``<name>_ci``.
    """
    predicted = scores.argmax(1)
    top5 = scores.topk(min(5, num_classes), 1).indices
    confusion = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(confusion, (labels.numpy(), predicted.numpy()), 1)
    totals = confusion.sum(1)
    per_class = np.where(totals > 0, np.diag(confusion) / np.maximum(totals, 1), np.nan)
    top1_correct = (predicted == labels).numpy().astype(float)
    top5_correct = (top5 == labels[:, None]).any(1).numpy().astype(float)
    metrics = {
        "top1": float(top1_correct.mean()),
        "top5": float(top5_correct.mean()),
        "mean_class_accuracy": float(np.nanmean(per_class)),
        "per_class_accuracy": _none_for_nan(per_class),
        "confusion": confusion.tolist(),
    }
    if bootstrap is not None:
        labels_array = labels.numpy()
        top1 = bootstrap.accuracy_samples(top1_correct, labels_array, num_classes)
        metrics["top1_ci"] = accuracy_interval(top1["accuracy"], top1_correct)
        top5 = bootstrap.accuracy_samples(top5_correct, labels_array, num_classes)
        metrics["top5_ci"] = accuracy_interval(top5["accuracy"], top5_correct)
        metrics["mean_class_accuracy_ci"] = accuracy_interval(top1["mean_class_accuracy"], top1_correct)
        per_class_samples = bootstrap.per_class_accuracy(top1_correct, labels_array, num_classes)
        with np.errstate(all="ignore"):
            low, high = interval(per_class_samples)
        metrics["per_class_accuracy_ci"] = [exact_interval(top1_correct[labels_array == k]) or list(pair)
                                            for k, pair in enumerate(zip(_none_for_nan(low), _none_for_nan(high)))]
    return metrics


def model_metrics(objective: Objective, scores: torch.Tensor, labels: torch.Tensor, num_classes: int,
                 bootstrap: Bootstrap | None = None) -> dict:
    """:func:`classification_metrics`, or for a multi-label dataset (``labels``: (N, K) targets) mAP and per-class
    average precision (:func:`tclsta.multilabel.multilabel_metrics`)."""
    if objective.multilabel:
        return multilabel_metrics(scores, labels, bootstrap)
    return classification_metrics(scores, labels, num_classes, bootstrap)


def _none_for_nan(values: Sequence[float]) -> list[float | None]:
    return [None if np.isnan(value) else float(value) for value in values]


def fuse_streams(rgb_scores: Path, flow_scores: Path, config: FusionConfig, classes: list[str], out_path: Path,
                 manifest: pd.DataFrame | None = None) -> None:
    """Learn the fusion weights on the validation videos and write them as JSON; a multi-label ``manifest`` gives
    the videos' targets (per-class sigmoid fusion)."""
    rgb_logits, flow_logits, labels, video_ids = paired_scores(read_scores(rgb_scores), read_scores(flow_scores), "val")
    if not len(labels):
        raise RuntimeError(f"no validation videos scored by both streams in {rgb_scores} and {flow_scores}")
    objective = Objective()
    if manifest is not None:  # its labels: (N, K) targets of a multi-label dataset
        objective = Objective.of(manifest)
        labels = objective.targets(manifest, classes, video_ids)
    weights = learn_fusion(rgb_logits, flow_logits, labels, config, objective)
    payload = weights.as_dict(classes) | {
        "multilabel": objective.multilabel,
        "raw_per_class": weights.per_class.tolist(),
        "raw_global": weights.global_weights.tolist(),
    }
    write_text_atomic(out_path, json.dumps(payload, indent=2))


def aligned_logits(scores: pd.DataFrame, video_ids: Sequence[str], source: Path) -> torch.Tensor:
    """The (N, K) logits of ``scores`` for ``video_ids``, in that order; every one must be present."""
    table = scores.set_index("video_id")
    missing = sorted(set(video_ids) - set(table.index))
    if missing:
        raise RuntimeError(f"{source} lacks {len(missing)} video(s) the streams scored, e.g. {missing[0]}")
    return torch.tensor(table.loc[list(video_ids)].filter(like="score_").to_numpy(), dtype=torch.float32)


def read_fusion_json(path: Path) -> dict:
    """The content of the fusion JSON ``fuse_streams`` wrote, checked (a damaged one is a ``BadModelFileError``)."""
    with model_file(path):
        fusion = json.loads(Path(path).read_text(encoding="utf-8"))
        fusion_weights(fusion)  # KeyError, TypeError or ValueError where the weights are missing or no numbers
        if not {"global", "per_class"} <= fusion.keys():
            raise KeyError("'global' or 'per_class'")
    return fusion


def read_fusion(path: Path) -> FusionWeights:
    """The fusion weights ``fuse_streams`` wrote."""
    return fusion_weights(read_fusion_json(path))


def fusion_weights(fusion: dict) -> FusionWeights:
    """The fusion weights of a fusion JSON's content."""
    return FusionWeights(torch.tensor(fusion["raw_per_class"]), torch.tensor(fusion["raw_global"]),
                         Objective(fusion.get("multilabel", False)))


def evaluate(
    manifest: pd.DataFrame, rgb_scores: Path, flow_scores: Path, fusion_path: Path, config: FusionConfig,
    out_path: Path, dataset: str, extra: dict | None = None, collaborative_scores: Path | None = None,
) -> None:
    """Test-split metrics of each stream, the learned fusion, fixed late fusion and (when its scores are
    given) the collaborative model, as metrics.json."""
    classes, objective = class_names(manifest), Objective.of(manifest)
    rgb_logits, flow_logits, _, video_ids = paired_scores(read_scores(rgb_scores), read_scores(flow_scores), "test")
    labels = objective.targets(manifest, classes, video_ids)
    fusion = read_fusion_json(fusion_path)
    candidates = {
        "rgb": rgb_logits,
        "flow": flow_logits,
        "fused": fusion_weights(fusion).fuse(rgb_logits, flow_logits),
        "late_fusion": late_fusion(rgb_logits, flow_logits, tuple(config.late_fusion_weights), objective),
    }
    if collaborative_scores is not None:
        candidates["collaborative"] = aligned_logits(read_scores(collaborative_scores), video_ids, collaborative_scores)
    bootstrap = Bootstrap.draw(len(labels))
    results, confusion = {}, {}
    for name, scores in candidates.items():
        metrics = model_metrics(objective, scores, labels, len(classes), bootstrap)
        confusion[name] = metrics.pop("confusion")
        results[name] = metrics
    val_rgb, val_flow, _, val_ids = paired_scores(read_scores(rgb_scores), read_scores(flow_scores), "val")
    val_labels = objective.targets(manifest, classes, val_ids)
    per_class = per_class_key(objective.multilabel)
    payload = {
        "dataset": dataset,
        "multilabel": objective.multilabel,
        "classes": classes,
        "num_videos": manifest["split"].value_counts().reindex(["train", "val", "test"], fill_value=0).astype(int).to_dict(),
        "num_test_videos_scored": len(labels),
        "results": results,
        "confusion": confusion,
        "fusion_weights": {"global": fusion["global"], "per_class": fusion["per_class"]},
        # what the fusion weights were learned from: each stream's accuracy (or AP) per class on the validation videos
        f"validation_{per_class}": {stream: model_metrics(objective, scores, val_labels, len(classes))[per_class]
                                    for stream, scores in (("rgb", val_rgb), ("flow", val_flow))},
        "bootstrap": {"samples": BOOTSTRAP_SAMPLES, "seed": BOOTSTRAP_SEED, "confidence": CONFIDENCE,
                      "over": "test videos", "exact": "Clopper-Pearson where all videos are right or all wrong"},
        **(extra or {}),
    }
    write_text_atomic(out_path, json.dumps(payload, indent=2))
