"""Multi-label datasets (a video may carry several classes, as in CCV), learned with per-class sigmoids and scored
by average precision.

A dataset is multi-label when its manifest has a ``labels`` column: the video's class names joined by ``;``
(``class_name`` and ``label`` then hold its first class, which the validation carve stratifies on).
:class:`Objective` is the one place where the label type picks the loss (softmax cross-entropy or per-class
binary cross-entropy), what counts as a hit in the training history, the probabilities and the terms the fusion
weights multiply; the trainer, the fusion, the collaborative model and prediction all ask it.

Fusion for multi-label data: per class ``c``, ``z_c = w_rgb[c] * z_rgb[c] + w_flow[c] * z_flow[c]`` on the
streams' logits (log-odds) before the sigmoid, ``p_c = sigmoid(z_c)``. This is the binary form of the log-linear
pooling the single-label fusion does with log-softmax scores, with the same per-stream, per-class weights (the
authors' earlier work, arXiv 1703.08025); the weights are fitted by binary cross-entropy on the validation
videos. The collaborative model keeps the paper's architecture; only its classifier's loss becomes per-class
binary cross-entropy.

Metrics: average precision per class (the area under the precision-recall curve as the mean of the precision
at each positive video, tied scores counted together) and their mean, mAP, with bootstrap intervals from the
same resamples as the accuracies (``tclsta.evaluate.Bootstrap``; a resample counts a video drawn twice twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from tclsta.data.manifest import is_multilabel, multi_hot

if TYPE_CHECKING:
    from tclsta.evaluate import Bootstrap

THRESHOLD = 0.5
"""Probability above which ``predict`` lists a class of a multi-label model by default."""


@dataclass(frozen=True)
class Objective:
    """What the dataset's label type means for learning and scoring: one class per video (softmax) or a set
    (a sigmoid per class)."""

    multilabel: bool = False

    @classmethod
    def of(cls, manifest: pd.DataFrame) -> Objective:
        return cls(is_multilabel(manifest))

    def targets(self, manifest: pd.DataFrame, classes: Sequence[str], video_ids: Sequence[str]) -> torch.Tensor:
        """Targets of ``video_ids``: (N,) class indices, or (N, K) 0/1 floats for a multi-label dataset."""
        if self.multilabel:
            return torch.from_numpy(multi_hot(manifest, classes, video_ids))
        return torch.tensor(manifest.set_index("video_id").loc[list(video_ids), "label"].to_numpy())

    def dataset_labels(self, rows: pd.DataFrame, classes: Sequence[str]) -> list:
        """What each training clip carries as its label: the class index, or the (K,) 0/1 target."""
        return list(multi_hot(rows, classes, rows["video_id"].tolist())) if self.multilabel else rows["label"].tolist()

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean loss of (N, K) logits: softmax cross-entropy, or binary cross-entropy of each class's sigmoid."""
        if self.multilabel:
            return F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype))
        return F.cross_entropy(logits, targets)

    def hits(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(N,) bool: top-1 is the label; multi-label: top-1 is one of the video's labels (precision at 1; an exact
        match of the label set would be out of reach of a stream that sees only some of the cues)."""
        if self.multilabel:
            return targets.gather(1, logits.argmax(1, keepdim=True)).squeeze(1) > 0
        return logits.argmax(1) == targets

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(N, K) class probabilities: softmax over the classes, or each class's sigmoid."""
        return logits.sigmoid() if self.multilabel else logits.softmax(1)

    def fusion_terms(self, logits: torch.Tensor) -> torch.Tensor:
        """What the fusion weights multiply: log-softmax scores, or the logits (log-odds) before the sigmoid."""
        return logits if self.multilabel else F.log_softmax(logits, 1)


def average_precision(scores: np.ndarray, targets: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(B, K) average precision of each class in each of B weightings of the N videos.

    ``scores`` and ``targets`` are (N, K), ``weights`` (B, N) how often each video counts (bootstrap counts, or
    ones). NaN where a weighting holds no positive video of the class.
    """
    result = np.empty((len(weights), scores.shape[1]))
    for k in range(scores.shape[1]):
        order = np.argsort(-scores[:, k], kind="stable")
        ranked, positive = scores[order, k], targets[order, k]
        counted = weights[:, order]  # (B, N)
        true_positives, retrieved = np.cumsum(counted * positive, 1), np.cumsum(counted, 1)
        # tied scores share one threshold: the precision at the last video of their run
        starts = np.r_[True, ranked[1:] != ranked[:-1]]  # (N,) first video of each run of equal scores
        run_end = np.r_[np.flatnonzero(starts)[1:] - 1, len(ranked) - 1][np.cumsum(starts) - 1]
        with np.errstate(all="ignore"):
            precision = true_positives[:, run_end] / retrieved[:, run_end]
            result[:, k] = np.nansum(counted * positive * precision, 1) / (counted * positive).sum(1)
    result[~np.isfinite(result)] = np.nan
    return result


def multilabel_metrics(scores: torch.Tensor, targets: torch.Tensor, bootstrap: Bootstrap | None = None) -> dict:
    """mAP, per-class average precision and the top-1 confusion (rows: each label of a video, columns: its top
    class) of (N, K) scores; with ``bootstrap``, ``mAP_ci`` and ``per_class_ap_ci``."""
    from tclsta.evaluate import _none_for_nan, interval

    scores_array, targets_array = scores.float().numpy(), targets.numpy()
    per_class = average_precision(scores_array, targets_array, np.ones((1, len(scores_array))))[0]
    confusion = np.zeros((scores.shape[1],) * 2, dtype=int)
    rows, columns = np.nonzero(targets_array)
    np.add.at(confusion, (columns, scores_array.argmax(1)[rows]), 1)
    with np.errstate(all="ignore"):
        metrics = {"mAP": float(np.nanmean(per_class)), "per_class_ap": _none_for_nan(per_class), "confusion": confusion.tolist()}
        if bootstrap is not None:
            samples = average_precision(scores_array, targets_array, bootstrap.weights)  # (B, K)
            metrics["mAP_ci"] = interval(np.nanmean(samples, 1))
            low, high = interval(samples)
            metrics["per_class_ap_ci"] = [list(pair) for pair in zip(_none_for_nan(low), _none_for_nan(high))]
    return metrics


def headline_metrics(multilabel: bool) -> dict[str, str]:
    """The test metrics a report and the ablation table show, key in ``metrics.json`` -> column label."""
    if multilabel:
        return {"mAP": "mAP (%)"}
    return {"top1": "top-1 (%)", "top5": "top-5 (%)", "mean_class_accuracy": "mean class accuracy (%)"}


def per_class_key(multilabel: bool) -> str:
    """The per-class metric of ``metrics.json``'s results (``validation_<key>`` too): accuracy, or average precision."""
    return "per_class_ap" if multilabel else "per_class_accuracy"


def per_class_name(multilabel: bool) -> str:
    """How a report names that per-class metric."""
    return "AP" if multilabel else "acc."
