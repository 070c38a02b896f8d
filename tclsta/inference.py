"""Trained streams at test time: device, checkpoints, test clips, video-level scores and score files.

What every stage after training needs (scoring, features, attention, prediction,
evaluation, the collaborative model) and the trainer shares; the trainer
(:mod:`tclsta.train`) imports this module, never the other way round.

Test protocol (a stream's ``train.rgb``/``train.flow`` overrides applied): ``train.test_frames`` frames spread uniformly over the video,
the centre crop (``train.test_crops: 1``) or the four corners and the centre,
each mirrored (``10``); a video's logits are averaged over its crops.

Memory: the test clips go through a network in chunks of at most ``train.inference_batch`` images (crops x frames,
whole clips, at least one; :func:`chunked_outputs`), under bfloat16 autocast on CUDA, so it does not grow with
the number of crops, frames or videos; the loader reads as many videos as fill one chunk.

Scores CSV (one per stream): ``video_id, split, label`` then one column per
class (``score_0 ... score_{K-1}``) holding the video-level scores, for the
validation and test videos. A stream's file also holds the two scores it is
chosen from, ``lstm_k`` (the temporal head's logits) and ``frames_k`` (the
frame classifier's log-probabilities averaged over the test frames and crops,
TSN's test-time average); ``score_k`` is one of ``STREAM_SCORES``: ``lstm``,
``frames`` or ``both`` (log-softmax of lstm plus frames), the one
``model.stream_score`` names, or with ``auto`` the best on the validation videos
(:func:`choose_stream_score`). The collaborative model's file has ``score_k`` only.
"""

from __future__ import annotations

import dataclasses
import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from tclsta.atomic import atomic_path
from tclsta.config import ModelConfig, TrainConfig, build_section, for_stream, section_dict
from tclsta.data.dataset import (ClipSpec, EncodedClip, ShardClipDataset, clip_loader, decode_clips, decodes_on_device, model_input,
                                 stream_channels)
from tclsta.data.tables import read_table
from tclsta.data.manifest import class_names
from tclsta.errors import DeviceError, FileError, model_file
from tclsta.models import AttentionStream
from tclsta.multilabel import Objective
from tclsta.progress import Progress
from tclsta.settings import StageSettings

log = logging.getLogger(__name__)
TEST_PROTOCOL = ("test_frames", "test_crops", "crop_size")
"""The ``train`` keys that define the test clips (:func:`inference_clip_spec`)."""
# rgb/flow: each stream's overrides of these keys (tclsta.config.for_stream)
SCORE_SETTINGS = StageSettings("score", train=(*TEST_PROTOCOL, "inference_batch", "num_workers", "device", "decode_device", "rgb", "flow"),
                               model=("stream_score", "rgb", "flow"))
STREAM_SCORES = ("lstm", "frames", "both")


def pick_device(name: str, key: str = "train.device") -> torch.device:
    """``auto`` is CUDA when a GPU is visible, else the CPU; ``cuda`` without a GPU is an error naming ``key``."""
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError(key, "is 'cuda' but torch sees no CUDA device: use auto or cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def build_model(model: ModelConfig, modality: str, num_classes: int) -> AttentionStream:
    """The stream network for ``modality`` (rgb or flow)."""
    return AttentionStream(
        backbone=model.backbone,
        in_channels=stream_channels(modality, model.flow_stack),
        num_classes=num_classes,
        spatial=model.spatial_attention,
        temporal=model.temporal_attention,
        spatial_hidden=model.spatial_hidden,
        temporal_hidden=model.temporal_hidden,
        class_source=model.class_source,
        attention_temperature=model.attention_temperature,
        detach_attention=model.detach_attention,
        dropout=model.dropout,
        pretrained=model.pretrained,
    )


def inference_clip_spec(modality: str, flow_stack: int, train: TrainConfig) -> ClipSpec:
    """Test clips: ``test_frames`` frames spread uniformly, ``test_crops`` crops."""
    return ClipSpec(modality=modality, num_frames=train.test_frames, crop_size=tuple(train.crop_size),
                    flow_stack=flow_stack, test_crops=train.test_crops)


def split_dataset(manifest: pd.DataFrame, splits: Sequence[str], shards: Sequence[Path], spec: ClipSpec, seed: int,
                  encoded: bool = False, objective: Objective = Objective()) -> ShardClipDataset:
    """Dataset of the manifest's videos in ``splits`` that the shards hold (skipped bad videos are absent);
    ``encoded``: its clips are decoded on the device (:class:`ShardClipDataset`); ``objective``: what a clip's
    label is (the class index, or a multi-label dataset's 0/1 targets, for training)."""
    rows = manifest[manifest["split"].isin(splits)]
    return ShardClipDataset(shards, rows["video_id"].tolist(), objective.dataset_labels(rows, class_names(manifest)),
                            spec, seed, encoded)


def scoring_loader(manifest: pd.DataFrame, splits: Sequence[str], shards: Sequence[Path], modality: str, flow_stack: int,
                   train_config: TrainConfig, device: torch.device) -> DataLoader:
    """Batches of the test clips of the videos in ``splits``, in the dataset's order, as many videos as fill
    ``train.inference_batch`` images (at least one); the JPEGs are decoded on ``device`` when
    ``train.decode_device`` picks it (:func:`tclsta.data.dataset.decodes_on_device`)."""
    spec = inference_clip_spec(modality, flow_stack, train_config)
    dataset = split_dataset(manifest, splits, shards, spec, 0, decodes_on_device(train_config.decode_device, device))
    videos = max(1, train_config.inference_batch // (spec.test_crops * spec.num_frames))
    return clip_loader(dataset, batch_size=videos, num_workers=train_config.num_workers)


def save_checkpoint(path: Path, model: AttentionStream, modality: str, model_config: ModelConfig, classes: list[str],
                    epoch: int, val_acc: float, settings: dict) -> None:
    """Weights plus what is needed to rebuild the model; plain types only, so it loads with weights_only=True.

    ``settings`` are those prediction repeats (``tclsta.predict.PREDICT_SETTINGS``).
    """
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
    path = Path(path)
    if not path.is_file():
        raise FileError(path, "no such checkpoint: train the stream first (snakemake results/<dataset>/models/<stream>.pt)")
    with model_file(path):
        state = torch.load(path, map_location=device, weights_only=True)
        config = build_section(ModelConfig, state["model_config"], "model")
        # the trained weights replace the initial ones: no pretrained file is read
        model = build_model(dataclasses.replace(config, pretrained=None), state["modality"], len(state["classes"]))
        model.load_state_dict(state.pop("state_dict"))
    return model.to(device).eval(), config, state


@torch.no_grad()
def chunked_outputs(model: AttentionStream, clips: torch.Tensor | list[EncodedClip], device: torch.device, images: int,
                    fields: Sequence[str]) -> dict[str, torch.Tensor]:
    """The ``fields`` of the model's :class:`~tclsta.models.StreamOutput` for uint8 clips (B, T, C, H, W), or test
    crops (B, N, T, C, H, W) averaged over the N crops, as float32 CPU tensors (B, ...).

    The clips go through the model in chunks of at most ``images`` images (whole clips: at least one), each
    converted to model input on ``device`` only when its turn comes, under bfloat16 autocast on CUDA.
    """
    if isinstance(clips, list):  # encoded: decoded on the device (uint8, a quarter of the model input's size)
        clips = torch.stack(decode_clips(clips, device))
    crops = clips.shape[1] if clips.dim() == 6 else 1
    flat = clips.flatten(0, 1) if clips.dim() == 6 else clips  # (B * N, T, C, H, W)
    parts: dict[str, list[torch.Tensor]] = {field: [] for field in fields}
    for chunk in flat.split(max(1, images // flat.shape[1])):
        with torch.autocast("cuda", torch.bfloat16) if device.type == "cuda" else nullcontext():
            output = model(model_input(chunk, device))
        for field in fields:
            parts[field].append(_output_field(output, field).float().cpu())
    return {field: (joined := torch.cat(values)).view(-1, crops, *joined.shape[1:]).mean(1) for field, values in parts.items()}


def _output_field(output, field: str) -> torch.Tensor:
    """A field of a stream's output, or ``frame_scores``: the frame classifier's (B, K) log-probabilities averaged
    over the frames (TSN's test-time average), computed per clip before any averaging over crops."""
    if field == "frame_scores":
        return output.frame_logits.float().log_softmax(-1).mean(1)
    return getattr(output, field)


def run_over_videos(model: AttentionStream, loader: DataLoader, device: torch.device, images: int, fields: Sequence[str],
                    what: str) -> dict[str, torch.Tensor]:
    """:func:`chunked_outputs` of every batch of ``loader`` (:func:`scoring_loader`), joined in its order; logs
    what it runs and its progress."""
    spec = loader.dataset.spec
    log.info("%s: %d videos, %d crop(s) x %d frames at %s each, %d images per pass on %s", what, len(loader.dataset),
             spec.test_crops, spec.num_frames, "x".join(map(str, spec.crop_size)), images, device)
    parts: dict[str, list[torch.Tensor]] = {field: [] for field in fields}
    with Progress(what, len(loader.dataset)) as counter:
        for clips, labels in loader:
            for field, value in chunked_outputs(model, clips, device, images, fields).items():
                parts[field].append(value)
            counter.update(len(labels))
    return {field: torch.cat(values) for field, values in parts.items() if values}


def video_logits(model: AttentionStream, clips: torch.Tensor | list[EncodedClip], device: torch.device, images: int) -> torch.Tensor:
    """(B, K) logits of clips (B, T, C, H, W), or of test crops (B, N, T, C, H, W) averaged over the N crops
    (:func:`chunked_outputs`)."""
    return chunked_outputs(model, clips, device, images, ("logits",))["logits"]


def combine_stream_scores(lstm: np.ndarray, frames: np.ndarray) -> dict[str, np.ndarray]:
    """The (N, K) scores of each of ``STREAM_SCORES`` from the temporal head's logits and the frames' log-probabilities."""
    lstm_log_probs = torch.from_numpy(lstm).log_softmax(1).numpy()
    return {"lstm": lstm, "frames": frames, "both": lstm_log_probs + frames}


def _top1_of_each(sources: dict[str, np.ndarray], labels: np.ndarray, rows: np.ndarray) -> dict[str, float]:
    """Top-1 of each of ``STREAM_SCORES`` on the ``rows`` (a boolean mask); 0 where there are none."""
    return {name: float((sources[name][rows].argmax(1) == labels[rows]).mean()) if rows.any() else 0.0
            for name in STREAM_SCORES}


def choose_stream_score(sources: dict[str, np.ndarray], labels: np.ndarray, is_val: np.ndarray, setting: str) -> dict:
    """Top-1 of each of ``STREAM_SCORES`` on the validation rows, and the one used: ``setting`` unless it is ``auto``,
    then the most accurate (ties: the earlier in ``STREAM_SCORES``)."""
    val_top1 = _top1_of_each(sources, labels, is_val)
    chosen = setting if setting != "auto" else max(STREAM_SCORES, key=lambda name: val_top1[name])
    return {"setting": setting, "chosen": chosen, "val_top1": val_top1}


def stream_score_choice(table: pd.DataFrame, setting: str) -> dict:
    """:func:`choose_stream_score` for a stream's scores table, with each source's test top-1 too."""
    k = len(table.filter(like="score_").columns)
    sources = combine_stream_scores(*(table[[f"{name}_{i}" for i in range(k)]].to_numpy(dtype=np.float64) for name in ("lstm", "frames")))
    labels, split = table["label"].to_numpy(), table["split"].to_numpy()
    choice = choose_stream_score(sources, labels, split == "val", setting)
    choice["test_top1"] = _top1_of_each(sources, labels, split == "test")
    return choice


def stream_score_choices(paths: dict[str, Path], model_config: ModelConfig) -> dict[str, dict]:
    """:func:`stream_score_choice` of each stream's scores file (by stream name) that holds the temporal head's and the
    frames' scores, under the stream's ``model.stream_score``."""
    tables = {stream: read_scores(path) for stream, path in paths.items()}
    return {stream: stream_score_choice(table, for_stream(model_config, stream).stream_score)
            for stream, table in tables.items() if "lstm_0" in table.columns}


def score_stream(checkpoint: Path, shards: Sequence[Path], manifest: pd.DataFrame, train_config: TrainConfig, out_path: Path,
                 score_config: ModelConfig | None = None) -> None:
    """Video-level scores of a trained stream on the val and test videos (the test protocol above): the temporal
    head's, the frames', and as ``score_k`` those ``score_config.stream_score`` picks (default ``lstm``;
    :func:`choose_stream_score`)."""
    device = pick_device(train_config.device)
    model, model_config, state = load_checkpoint(checkpoint, device)
    train_config = for_stream(train_config, state["modality"])
    stream_score = for_stream(score_config, state["modality"]).stream_score if score_config is not None else ModelConfig.stream_score
    loader = scoring_loader(manifest, ["val", "test"], shards, state["modality"], model_config.flow_stack, train_config, device)
    outputs = run_over_videos(model, loader, device, train_config.inference_batch, ("logits", "frame_scores"),
                              f"scoring the {state['modality']} stream")
    empty = np.zeros((0, len(state["classes"])), np.float32)
    sources = combine_stream_scores(outputs["logits"].numpy() if outputs else empty,
                                    outputs["frame_scores"].numpy() if outputs else empty)
    split_of = manifest.set_index("video_id")["split"]
    dataset = loader.dataset
    video_ids = [item[1] for item in dataset.items]
    splits, labels = [split_of[v] for v in video_ids], [item[2] for item in dataset.items]
    choice = choose_stream_score(sources, np.array(labels), np.array(splits) == "val", stream_score)
    write_scores(out_path, video_ids, splits, labels, sources[choice["chosen"]],
                 {"lstm": sources["lstm"], "frames": sources["frames"]})


def write_scores(out_path: Path, video_ids: Sequence[str], splits: Sequence[str], labels: Sequence[int], scores: np.ndarray,
                 sources: dict[str, np.ndarray] | None = None) -> None:
    """Write a scores CSV (the format in the module docstring) for videos with (N, K) scores ``scores``, and
    ``sources`` (name: (N, K)) as ``<name>_k`` columns."""
    columns = {f"score_{k}": scores[:, k] for k in range(scores.shape[1])}
    for name, values in (sources or {}).items():
        columns.update({f"{name}_{k}": values[:, k] for k in range(values.shape[1])})
    table = pd.DataFrame(columns)
    table.insert(0, "video_id", list(video_ids))
    table.insert(1, "split", list(splits))
    table.insert(2, "label", list(labels))
    with atomic_path(out_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


def read_scores(path: Path) -> pd.DataFrame:
    """A scores CSV as written by :func:`write_scores` (every value checked)."""
    return read_table(path, text=("video_id",), integers=("label",), choices={"split": ("train", "val", "test")},
                      number_prefix="score_")
