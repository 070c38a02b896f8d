"""Training of one stream (static RGB or motion flow) of the spatial-temporal attention model.

A flat loop, top to bottom: data, model, optimiser, then per epoch one pass
over the training videos and one over the validation videos (carved from the
training split, never the test split). The checkpoint with the best
validation accuracy is kept; every epoch appends a row to the history CSV.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Sequence

import pandas as pd
import torch
from torch.utils.data import DataLoader

from tclsta.atomic import atomic_path
from tclsta.config import ModelConfig, TrainConfig, build_section, section_dict
from tclsta.data.dataset import ClipSpec, ShardClipDataset
from tclsta.data.manifest import class_names
from tclsta.models import AttentionStream, stream_loss

log = logging.getLogger(__name__)
HISTORY_COLUMNS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"]


def pick_device(name: str) -> torch.device:
    """``auto`` is CUDA when a GPU is visible, else the CPU."""
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but torch sees no CUDA device")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def build_model(model: ModelConfig, modality: str, num_classes: int) -> AttentionStream:
    """The stream network for ``modality`` (3 input channels for RGB, 2L for flow)."""
    channels = 3 if modality == "rgb" else 2 * model.flow_stack
    return AttentionStream(
        backbone=model.backbone,
        in_channels=channels,
        num_classes=num_classes,
        spatial=model.spatial_attention,
        temporal=model.temporal_attention,
        spatial_hidden=model.spatial_hidden,
        temporal_hidden=model.temporal_hidden,
        class_source=model.class_source,
        dropout=model.dropout,
        pretrained=model.pretrained,
    )


def clip_spec(modality: str, model: ModelConfig, train: TrainConfig, training: bool) -> ClipSpec:
    """Training clips: ``train_frames`` random segments, random crops; test clips: ``test_frames``, centre crop."""
    return ClipSpec(
        modality=modality,
        num_frames=train.train_frames if training else train.test_frames,
        crop_size=tuple(train.crop_size),
        flow_stack=model.flow_stack,
        train=training,
        flip=train.flip and training,
    )


def split_dataset(manifest: pd.DataFrame, splits: Sequence[str], shards: Sequence[Path], spec: ClipSpec, seed: int) -> ShardClipDataset:
    """Dataset of the manifest's videos in ``splits`` that the shards hold (skipped bad videos are absent)."""
    rows = manifest[manifest["split"].isin(splits)]
    return ShardClipDataset(shards, rows["video_id"].tolist(), rows["label"].tolist(), spec, seed)


def run_epoch(model: AttentionStream, loader: DataLoader, device: torch.device, optimizer: torch.optim.Optimizer | None) -> tuple[float, float]:
    """One pass; trains when an optimiser is given. Returns (mean loss, accuracy)."""
    model.train(optimizer is not None)
    total_loss, correct, count = 0.0, 0, 0
    with torch.set_grad_enabled(optimizer is not None):
        for clips, labels in loader:
            clips, labels = clips.to(device), labels.to(device)  # (B, T, C, H, W), (B,)
            output = model(clips, labels)
            loss = stream_loss(output, labels)
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            total_loss += loss.item() * len(labels)
            correct += int((output.logits.argmax(1) == labels).sum())
            count += len(labels)
    return total_loss / max(count, 1), correct / max(count, 1)


def train_stream(
    shards: Sequence[Path],
    manifest: pd.DataFrame,
    modality: str,
    model_config: ModelConfig,
    train_config: TrainConfig,
    checkpoint_path: Path,
    history_path: Path,
    preprocessing: dict | None = None,
) -> None:
    """Train one stream and write its best checkpoint and per-epoch history.

    ``preprocessing`` (the ``preprocess`` and ``flow`` settings) is stored in the
    checkpoint so that prediction on new videos repeats it exactly.
    """
    torch.manual_seed(train_config.seed)
    device = pick_device(train_config.device)
    classes = class_names(manifest)
    train_set = split_dataset(manifest, ["train"], shards, clip_spec(modality, model_config, train_config, True), train_config.seed)
    val_set = split_dataset(manifest, ["val"], shards, clip_spec(modality, model_config, train_config, False), train_config.seed)
    if not len(train_set) or not len(val_set):
        raise RuntimeError(f"{modality} stream: {len(train_set)} training and {len(val_set)} validation videos in the shards; need both")
    loader_args = dict(batch_size=train_config.batch_size, num_workers=train_config.num_workers, pin_memory=device.type == "cuda")
    train_loader = DataLoader(train_set, shuffle=True, drop_last=len(train_set) > train_config.batch_size,
                              generator=torch.Generator().manual_seed(train_config.seed), **loader_args)
    val_loader = DataLoader(val_set, shuffle=False, **loader_args)

    model = build_model(model_config, modality, len(classes)).to(device)
    if train_config.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=train_config.lr, momentum=0.9, weight_decay=train_config.weight_decay)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=train_config.lr, weight_decay=train_config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda epoch: 0.5 * (1 + math.cos(math.pi * epoch / train_config.epochs))
    )
    log.info("%s stream: %d train / %d val videos, %d classes, device %s", modality, len(train_set), len(val_set), len(classes), device)

    history: list[dict] = []
    best = (-1.0, math.inf)  # (val accuracy, val loss) of the kept checkpoint: higher accuracy wins, then lower loss
    for epoch in range(1, train_config.epochs + 1):
        start = time.time()
        train_set.set_epoch(epoch)
        train_loss, train_acc = run_epoch(model, train_loader, device, optimizer)
        scheduler.step()
        val_loss, val_acc = run_epoch(model, val_loader, device, None)
        history.append(dict(epoch=epoch, train_loss=train_loss, train_acc=train_acc, val_loss=val_loss,
                            val_acc=val_acc, seconds=time.time() - start))
        log.info("epoch %d: train loss %.4f acc %.3f | val loss %.4f acc %.3f", epoch, train_loss, train_acc, val_loss, val_acc)
        if (val_acc, -val_loss) > (best[0], -best[1]):
            best = (val_acc, val_loss)
            settings = {"train": section_dict(train_config), **(preprocessing or {})}
            save_checkpoint(checkpoint_path, model, modality, model_config, classes, epoch, val_acc, settings)
    with atomic_path(history_path) as tmp:
        pd.DataFrame(history, columns=HISTORY_COLUMNS).to_csv(tmp, index=False)


def save_checkpoint(
    path: Path,
    model: AttentionStream,
    modality: str,
    model_config: ModelConfig,
    classes: list[str],
    epoch: int,
    val_acc: float,
    settings: dict,
) -> None:
    """Weights plus what is needed to rebuild the model; plain types only, so it loads with weights_only=True."""
    state = {
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "modality": modality,
        "model_config": section_dict(model_config),
        "classes": classes,
        "epoch": epoch,
        "val_acc": val_acc,
        "settings": settings,
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path, device: torch.device) -> tuple[AttentionStream, ModelConfig, dict]:
    """Rebuild a trained stream from its checkpoint (never unpickles arbitrary objects).

    Returns the model in eval mode, its config, and the checkpoint's other entries.
    """
    state = torch.load(path, map_location=device, weights_only=True)
    config = build_section(ModelConfig, state["model_config"], "model")
    model = build_model(config, state["modality"], len(state["classes"]))
    model.load_state_dict(state.pop("state_dict"))
    return model.to(device).eval(), config, state
