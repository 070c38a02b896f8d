"""Training of the static-motion collaborative model on the cached stream features.

A flat loop like ``train.py``: the two streams' features (``tclsta/features.py``)
are paired by video and the model (``tclsta/models/collaborative.py``) is trained
with RMSprop. ``fit_on: val`` (the default) fits it on the validation videos'
features, which the streams never trained on: the streams over-fit their own
training videos, so their features of those videos are more confident than
those of unseen videos. Its epoch is chosen by k-fold cross-validation on those
videos (``folds``; :func:`kfold`): a model per fold learns from the other folds
for ``epochs`` epochs and is scored on its own fold after each; the epoch with
the best mean held-out accuracy (then lowest loss) is kept from a final fit on
all validation videos, and that held-out accuracy is the model's honest
validation score (``cv_acc`` in the checkpoint; :mod:`tclsta.model_choice`
compares it with the fusion weights'). ``fit_on: train``
fits on the training videos' features and keeps the epoch with the best
validation accuracy (then lowest validation loss). The test videos are only
scored. Outputs: a checkpoint that loads with ``weights_only=True``, the
per-epoch history CSV, and a scores CSV in the format of the stream scores
(``tclsta/evaluate.py``) for the val and test videos. For a multi-label dataset
(its manifest given) the loss is per-class binary cross-entropy
(:class:`tclsta.multilabel.Objective`).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from tclsta.atomic import atomic_path
from tclsta.config import CollaborativeConfig, build_section, section_dict
from tclsta.errors import model_file
from tclsta.features import StreamFeatures, read_features
from tclsta.inference import pick_device, write_scores
from tclsta.models import CollaborativeModel
from tclsta.multilabel import Objective
from tclsta.progress import progress
from tclsta.settings import StageSettings, section_keys

COLLABORATIVE_SETTINGS = StageSettings("collaborative", train=("device",), collaborative=section_keys("collaborative"))

log = logging.getLogger(__name__)
# cv_loss, cv_acc (fit_on val): the mean over the folds of the held-out loss and accuracy after each epoch
HISTORY_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "cv_loss", "cv_acc", "seconds"]


@dataclass(frozen=True)
class PairedFeatures:
    """Static and motion features of the videos both streams hold, row-aligned."""

    static: torch.Tensor  # (N, T, Ds)
    motion: torch.Tensor  # (N, T', Dm)
    labels: torch.Tensor  # (N,)
    video_ids: list[str]
    splits: list[str]
    classes: list[str]
    targets: torch.Tensor  # what the model learns: the labels, or (N, K) 0/1 targets of a multi-label dataset

    def split_ids(self, name: str) -> list[str]:
        """The video ids of split ``name``, in the order of :meth:`split`."""
        return [video for video, split in zip(self.video_ids, self.splits) if split == name]

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(static, motion, targets) of the videos of split ``name``."""
        rows = torch.tensor([s == name for s in self.splits], dtype=torch.bool)
        return self.static[rows], self.motion[rows], self.targets[rows]


def pair_features(static: StreamFeatures, motion: StreamFeatures) -> PairedFeatures:
    """Align the rgb and flow features by video id (videos missing from either stream are left out)."""
    if static.classes != motion.classes:
        raise RuntimeError(f"the rgb and flow features disagree on the classes: {static.classes} vs {motion.classes}")
    merged = static.to_frame().merge(motion.to_frame(), on=["video_id", "split", "label"], suffixes=("_static", "_motion"))
    labels = torch.tensor(merged["label"].to_numpy())
    return PairedFeatures(
        static=torch.from_numpy(static.features[merged["row_static"].to_numpy()]),
        motion=torch.from_numpy(motion.features[merged["row_motion"].to_numpy()]),
        labels=labels,
        video_ids=merged["video_id"].tolist(),
        splits=merged["split"].tolist(),
        classes=static.classes,
        targets=labels,
    )


def kfold(video_ids: list[str], folds: int, seed: int) -> list[torch.Tensor]:
    """Indices into ``video_ids`` of each of ``folds`` folds: a video's fold depends on its id and ``seed`` only, so
    every model cross-validated on the same videos uses the same folds, whatever their order."""
    order = sorted(range(len(video_ids)), key=lambda i: video_ids[i])
    shuffled = torch.tensor(order, dtype=torch.long)[torch.randperm(len(order), generator=torch.Generator().manual_seed(seed))]
    return [shuffled[fold::folds].sort().values for fold in range(folds)]


def build_collaborative(config: CollaborativeConfig, static_dim: int, motion_dim: int, num_classes: int) -> CollaborativeModel:
    return CollaborativeModel(static_dim, motion_dim, num_classes, hidden=config.hidden, dropout=config.dropout,
                              mutual_guidance=config.mutual_guidance)


def run_epoch(model: CollaborativeModel, data: tuple[torch.Tensor, torch.Tensor, torch.Tensor], batch_size: int,
              device: torch.device, optimizer: torch.optim.Optimizer | None = None,
              generator: torch.Generator | None = None, objective: Objective = Objective()) -> tuple[float, float]:
    """One pass over (static, motion, targets); trains, in shuffled batches, when an optimiser is given.
    Returns (mean loss, accuracy; multi-label: share of videos whose top class is one of their labels)."""
    static, motion, labels = data
    model.train(optimizer is not None)
    order = torch.randperm(len(labels), generator=generator) if optimizer is not None else torch.arange(len(labels))
    total_loss, correct = 0.0, 0
    with torch.set_grad_enabled(optimizer is not None):
        for batch in order.split(batch_size):
            batch_labels = labels[batch].to(device)  # (B,) or (B, K)
            logits = model(static[batch].to(device), motion[batch].to(device)).logits  # (B, K)
            loss = objective.loss(logits, batch_labels)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            total_loss += loss.item() * len(batch)
            correct += int(objective.hits(logits, batch_labels).sum())
    return total_loss / max(len(labels), 1), correct / max(len(labels), 1)


def train_collaborative(rgb_features: Path, flow_features: Path, config: CollaborativeConfig, device_name: str,
                        checkpoint_path: Path, history_path: Path, scores_path: Path, manifest: pd.DataFrame | None = None) -> None:
    """Train the collaborative model on the ``config.fit_on`` videos' features, score val and test; a multi-label
    ``manifest`` gives the videos' targets.

    The history has both splits' loss and accuracy per epoch, whichever is fitted; fitted on val, the training
    videos' columns are empty when their features were not extracted (:func:`tclsta.features.feature_splits`).
    """
    torch.manual_seed(config.seed)
    device = pick_device(device_name)
    paired = pair_features(read_features(rgb_features), read_features(flow_features))
    objective = Objective()
    if manifest is not None:  # its labels: (N, K) targets of a multi-label dataset
        objective = Objective.of(manifest)
        paired = dataclasses.replace(paired, targets=objective.targets(manifest, paired.classes, paired.video_ids))
    train, val = paired.split("train"), paired.split("val")
    fit_on_val = config.fit_on == "val"
    if not len(val[2]) or not (len(train[2]) or fit_on_val):
        raise RuntimeError(f"collaborative model: {len(train[2])} training and {len(val[2])} validation videos "
                           f"with features of both streams; fitted on {config.fit_on}, it needs validation videos"
                           f"{' and training videos' if not fit_on_val else ''}")
    dims = (paired.static.shape[-1], paired.motion.shape[-1], len(paired.classes))
    log.info("collaborative model (mutual guidance %s): %d train / %d val videos, fitted on %s, device %s",
             config.mutual_guidance, len(train[2]), len(val[2]), config.fit_on, device)
    cv = cross_validate(config, dims, val, paired.split_ids("val"), device, objective) if fit_on_val else None

    model = build_collaborative(config, *dims).to(device)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(config.seed)
    history: list[dict] = []
    best = (-1.0, math.inf, 0)  # (accuracy, loss, epoch) on val, cross-validated when fitted on val: higher accuracy wins, then lower loss
    best_state = copy.deepcopy(model.state_dict())
    for epoch in progress(range(1, config.epochs + 1), "collaborative model, training", unit="epochs"):
        start = time.time()
        fitted = run_epoch(model, val if fit_on_val else train, config.batch_size, device, optimizer, generator, objective)
        checked = (run_epoch(model, train if fit_on_val else val, config.batch_size, device, objective=objective)
                   if len(train[2]) else (math.nan, math.nan))
        (train_loss, train_acc), (val_loss, val_acc) = (checked, fitted) if fit_on_val else (fitted, checked)
        cv_loss, cv_acc = cv[epoch - 1] if cv is not None else (math.nan, math.nan)
        history.append(dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss,
                            val_acc=val_acc, cv_loss=cv_loss, cv_acc=cv_acc, seconds=time.time() - start))
        selected = (cv_acc, cv_loss) if fit_on_val else (val_acc, val_loss)
        if (selected[0], -selected[1]) > (best[0], -best[1]):
            best = (*selected, epoch)
            best_state = copy.deepcopy(model.state_dict())
    log.info("kept epoch %d of %d: %s acc %.3f, loss %.4f", best[2], config.epochs,
             f"{config.folds}-fold cross-validated val" if fit_on_val else "val", best[0], best[1])
    model.load_state_dict(best_state)

    state = {
        "state_dict": {k: v.detach().cpu() for k, v in best_state.items()},
        "config": section_dict(config),
        "dims": [paired.static.shape[-1], paired.motion.shape[-1]],
        "classes": paired.classes,
        "epoch": best[2],
        "val_acc": best[0],  # fit_on val: the cross-validated accuracy
        "cv_acc": best[0] if fit_on_val else None,
    }
    with atomic_path(checkpoint_path) as tmp:
        torch.save(state, tmp)
    with atomic_path(history_path) as tmp:
        pd.DataFrame(history, columns=HISTORY_COLUMNS).to_csv(tmp, index=False)
    score_collaborative(model, paired, config.batch_size, device, scores_path)


def cross_validate(config: CollaborativeConfig, dims: tuple[int, int, int], data: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                   video_ids: list[str], device: torch.device, objective: Objective = Objective()) -> list[tuple[float, float]]:
    """Per epoch, the (loss, accuracy) on each held-out fold of :func:`kfold`, averaged over the folds (weighted by size)."""
    totals = torch.zeros(config.epochs, 2, dtype=torch.float64)
    for fold, held_out in enumerate(kfold(video_ids, config.folds, config.seed)):
        kept = torch.ones(len(video_ids), dtype=torch.bool)
        kept[held_out] = False
        torch.manual_seed(config.seed + 1 + fold)
        model = build_collaborative(config, *dims).to(device)
        optimizer = torch.optim.RMSprop(model.parameters(), lr=config.lr)
        generator = torch.Generator().manual_seed(config.seed + 1 + fold)
        fit, check = tuple(part[kept] for part in data), tuple(part[held_out] for part in data)
        for epoch in range(config.epochs):
            run_epoch(model, fit, config.batch_size, device, optimizer, generator, objective)
            loss, acc = run_epoch(model, check, config.batch_size, device, objective=objective)
            totals[epoch] += torch.tensor([loss, acc], dtype=torch.float64) * len(held_out)
    torch.manual_seed(config.seed)
    return [(float(loss), float(acc)) for loss, acc in (totals / len(video_ids)).tolist()]


def score_collaborative(model: CollaborativeModel, paired: PairedFeatures, batch_size: int, device: torch.device,
                        out_path: Path) -> None:
    """Logits of the val and test videos as a scores CSV."""
    model.eval()
    rows = [i for i, s in enumerate(paired.splits) if s in ("val", "test")]
    index = torch.tensor(rows, dtype=torch.long)
    with torch.no_grad():
        logits = torch.cat([model(paired.static[b].to(device), paired.motion[b].to(device)).logits.float().cpu()
                            for b in index.split(batch_size)]) if rows else torch.zeros(0, len(paired.classes))
    write_scores(out_path, [paired.video_ids[i] for i in rows], [paired.splits[i] for i in rows],
                 paired.labels[index].tolist(), logits.numpy())
    log.info("collaborative model: scored %d val and test videos into %s", len(rows), out_path)


def load_collaborative(path: Path, device: torch.device) -> tuple[CollaborativeModel, CollaborativeConfig, dict]:
    """Rebuild a trained collaborative model (never unpickles arbitrary objects): model in eval mode, config, other entries."""
    with model_file(path):
        state = torch.load(path, map_location=device, weights_only=True)
        config = build_section(CollaborativeConfig, state["config"], "collaborative")
        model = build_collaborative(config, *state["dims"], len(state["classes"]))
        model.load_state_dict(state.pop("state_dict"))
    return model.to(device).eval(), config, state
