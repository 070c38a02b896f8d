"""Fusing the streams' scores (``tclsta.inference`` writes them) and the accuracy metrics of the test split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from tclsta.atomic import write_text_atomic
from tclsta.config import FusionConfig
from tclsta.data.manifest import class_names
from tclsta.fusion import FusionWeights, late_fusion, learn_fusion
from tclsta.inference import read_scores
from tclsta.settings import StageSettings

FUSE_SETTINGS = StageSettings("fuse", fusion=("steps", "lr", "per_class_penalty"))
# The demo's expected accuracy ceilings depend on its format and classes.
EVALUATE_SETTINGS = StageSettings("evaluate", entry=("format",), demo=("classes_per_kind",), fusion=("late_fusion_weights",))


def paired_scores(rgb: pd.DataFrame, flow: pd.DataFrame, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """RGB and flow logits of the videos of ``split`` that both streams scored, aligned by video id."""
    merged = rgb[rgb["split"] == split].merge(flow[flow["split"] == split], on=["video_id", "split", "label"], suffixes=("_rgb", "_flow"))
    k = len(rgb.filter(like="score_").columns)
    rgb_logits = torch.tensor(merged[[f"score_{i}_rgb" for i in range(k)]].to_numpy(), dtype=torch.float32)
    flow_logits = torch.tensor(merged[[f"score_{i}_flow" for i in range(k)]].to_numpy(), dtype=torch.float32)
    return rgb_logits, flow_logits, torch.tensor(merged["label"].to_numpy()), merged["video_id"].tolist()


def classification_metrics(scores: torch.Tensor, labels: torch.Tensor, num_classes: int) -> dict:
    """Top-1, top-5, mean class accuracy, per-class accuracy and the confusion matrix (rows: true)."""
    predicted = scores.argmax(1)
    top5 = scores.topk(min(5, num_classes), 1).indices
    confusion = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(confusion, (labels.numpy(), predicted.numpy()), 1)
    totals = confusion.sum(1)
    per_class = np.where(totals > 0, np.diag(confusion) / np.maximum(totals, 1), np.nan)
    return {
        "top1": float((predicted == labels).float().mean()),
        "top5": float((top5 == labels[:, None]).any(1).float().mean()),
        "mean_class_accuracy": float(np.nanmean(per_class)),
        "per_class_accuracy": [None if np.isnan(a) else float(a) for a in per_class],
        "confusion": confusion.tolist(),
    }


def fuse_streams(rgb_scores: Path, flow_scores: Path, config: FusionConfig, classes: list[str], out_path: Path) -> None:
    """Learn the fusion weights on the validation videos and write them as JSON."""
    rgb_logits, flow_logits, labels, _ = paired_scores(read_scores(rgb_scores), read_scores(flow_scores), "val")
    if not len(labels):
        raise RuntimeError(f"no validation videos scored by both streams in {rgb_scores} and {flow_scores}")
    weights = learn_fusion(rgb_logits, flow_logits, labels, config)
    payload = weights.as_dict(classes) | {
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


def read_fusion(path: Path) -> FusionWeights:
    """The fusion weights ``fuse_streams`` wrote."""
    fusion = json.loads(Path(path).read_text())
    return FusionWeights(torch.tensor(fusion["raw_per_class"]), torch.tensor(fusion["raw_global"]))


def evaluate(
    manifest: pd.DataFrame, rgb_scores: Path, flow_scores: Path, fusion_path: Path, config: FusionConfig,
    out_path: Path, dataset: str, extra: dict | None = None, collaborative_scores: Path | None = None,
) -> None:
    """Test-split metrics of each stream, the learned fusion, fixed late fusion and (when its scores are
    given) the collaborative model, as metrics.json."""
    classes = class_names(manifest)
    rgb_logits, flow_logits, labels, video_ids = paired_scores(read_scores(rgb_scores), read_scores(flow_scores), "test")
    fusion = json.loads(Path(fusion_path).read_text())
    candidates = {
        "rgb": rgb_logits,
        "flow": flow_logits,
        "fused": read_fusion(fusion_path).fuse(rgb_logits, flow_logits),
        "late_fusion": late_fusion(rgb_logits, flow_logits, tuple(config.late_fusion_weights)),
    }
    if collaborative_scores is not None:
        candidates["collaborative"] = aligned_logits(read_scores(collaborative_scores), video_ids, collaborative_scores)
    results, confusion = {}, {}
    for name, scores in candidates.items():
        metrics = classification_metrics(scores, labels, len(classes))
        confusion[name] = metrics.pop("confusion")
        results[name] = metrics
    payload = {
        "dataset": dataset,
        "classes": classes,
        "num_videos": manifest["split"].value_counts().reindex(["train", "val", "test"], fill_value=0).astype(int).to_dict(),
        "num_test_videos_scored": len(labels),
        "results": results,
        "confusion": confusion,
        "fusion_weights": {"global": fusion["global"], "per_class": fusion["per_class"]},
        **(extra or {}),
    }
    write_text_atomic(out_path, json.dumps(payload, indent=2))
