"""Scoring the streams on held-out videos, fusing them, and the accuracy metrics.

Scores CSV (one per stream): ``video_id, split, label`` then one column per
class (``score_0 ... score_{K-1}``) holding the video-level logits, for the
validation and test videos.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from tclsta.atomic import atomic_path, write_text_atomic
from tclsta.config import FusionConfig, TrainConfig, for_stream
from tclsta.data.manifest import class_names
from tclsta.fusion import FusionWeights, late_fusion, learn_fusion
from tclsta.train import clip_spec, load_checkpoint, pick_device, split_dataset

STREAMS = ("rgb", "flow")


def score_stream(checkpoint: Path, shards: Sequence[Path], manifest: pd.DataFrame, train_config: TrainConfig, out_path: Path) -> None:
    """Video-level logits of a trained stream on the val and test videos (test protocol: ``test_frames``
    frames spread uniformly, centre crop or 10 crops)."""
    device = pick_device(train_config.device)
    model, model_config, state = load_checkpoint(checkpoint, device)
    train_config = for_stream(train_config, state["modality"])
    dataset = split_dataset(manifest, ["val", "test"], shards, clip_spec(state["modality"], model_config, train_config, False), 0)
    loader = DataLoader(dataset, batch_size=train_config.batch_size, num_workers=train_config.num_workers)
    logits = []
    with torch.no_grad():
        for clips, _ in loader:
            logits.append(video_logits(model, clips.to(device)).float().cpu())
    scores = torch.cat(logits).numpy() if logits else np.zeros((0, len(state["classes"])))
    split_of = manifest.set_index("video_id")["split"]
    video_ids = [item[1] for item in dataset.items]
    write_scores(out_path, video_ids, [split_of[v] for v in video_ids], [item[2] for item in dataset.items], scores)


def write_scores(out_path: Path, video_ids: Sequence[str], splits: Sequence[str], labels: Sequence[int], scores: np.ndarray) -> None:
    """Write a scores CSV (the format in the module docstring) for videos with (N, K) logits ``scores``."""
    table = pd.DataFrame(scores, columns=[f"score_{k}" for k in range(scores.shape[1])])
    table.insert(0, "video_id", list(video_ids))
    table.insert(1, "split", list(splits))
    table.insert(2, "label", list(labels))
    with atomic_path(out_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


def video_logits(model: torch.nn.Module, clips: torch.Tensor) -> torch.Tensor:
    """(B, K) logits of clips (B, T, C, H, W), or of test crops (B, N, T, C, H, W) averaged over the N crops."""
    if clips.dim() == 6:
        b, n = clips.shape[:2]
        return model(clips.flatten(0, 1)).logits.view(b, n, -1).mean(1)
    return model(clips).logits


def read_scores(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"video_id": str, "split": str})


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
