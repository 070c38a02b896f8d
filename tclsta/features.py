"""Per-frame features of a trained stream, extracted once for the collaborative model.

The collaborative model (``tclsta/models/collaborative.py``) trains on the
attended frame features (``StreamOutput.features``) of both streams. Running
the backbones once per video and caching the result keeps its training to
seconds. Features follow the test protocol (``train.test_frames`` frames
spread uniformly over the video, centre crop or the mean over 10 crops), so the
collaborative model sees the same kind of input in training as at test time.
They are extracted for the videos it reads (:func:`feature_splits`): the val and
test videos, and the training videos only when it is fitted on them
(``collaborative.fit_on: train``). On UCF101 split 1 that skips 7,600 of
13,300 videos at 25 x 10 crops per stream.

On-disk layout of a features file (``results/<dataset>/features/<stream>.h5``)::

    /              attrs: format="tclsta-features", version=1, stream ("rgb" or "flow"),
                   classes (JSON list of class names), checkpoint_epoch
    /video_ids     (N,) variable-length UTF-8 strings
    /splits        (N,) variable-length UTF-8 strings: train, val or test
    /labels        (N,) int64, 0-based class indices
    /features      (N, T, D) float32: row i holds the T frame features of video_ids[i]

The file is written to a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import pandas as pd

from tclsta.atomic import atomic_path
from tclsta.config import TrainConfig, for_stream
from tclsta.errors import FileError
from tclsta.inference import SCORE_SETTINGS, load_checkpoint, pick_device, run_over_videos, scoring_loader
from tclsta.settings import StageSettings

FEATURES_FORMAT = "tclsta-features"
FEATURES_VERSION = 1
SPLITS = ("train", "val", "test")
# What scoring reads of the test protocol and batches, and which videos the collaborative model reads.
FEATURES_SETTINGS = StageSettings("features", train=SCORE_SETTINGS.sections["train"], collaborative=("fit_on",))


def feature_splits(fit_on: str) -> tuple[str, ...]:
    """The splits whose features the collaborative model reads: those it fits on, and val and test, which it scores."""
    return SPLITS if fit_on == "train" else ("val", "test")


@dataclass(frozen=True)
class StreamFeatures:
    """The cached frame features of one stream."""

    stream: str
    classes: list[str]
    video_ids: list[str]
    splits: list[str]
    labels: np.ndarray  # (N,) int64
    features: np.ndarray  # (N, T, D) float32

    def to_frame(self) -> pd.DataFrame:
        """One row per video (video_id, split, label, row), for aligning two streams."""
        return pd.DataFrame({"video_id": self.video_ids, "split": self.splits, "label": self.labels,
                             "row": np.arange(len(self.video_ids))})


def extract_features(checkpoint: Path, shards: Sequence[Path], manifest: pd.DataFrame, train_config: TrainConfig,
                     out_path: Path, splits: Sequence[str] = SPLITS) -> None:
    """Run a trained stream over every video of ``splits`` (test protocol) and cache its frame features."""
    device = pick_device(train_config.device)
    model, model_config, state = load_checkpoint(checkpoint, device)
    train_config = for_stream(train_config, state["modality"])
    loader = scoring_loader(manifest, list(splits), shards, state["modality"], model_config.flow_stack, train_config, device)
    outputs = run_over_videos(model, loader, device, train_config.inference_batch, ("features",),
                              f"frame features of the {state['modality']} stream")
    features = outputs["features"].numpy() if outputs else np.zeros((0, train_config.test_frames, 0), np.float32)  # (N, T, D)
    split_of = manifest.set_index("video_id")["split"]
    dataset = loader.dataset
    video_ids = [item[1] for item in dataset.items]
    strings = h5py.string_dtype()
    with atomic_path(out_path) as tmp, h5py.File(tmp, "w") as file:
        file.attrs.update(format=FEATURES_FORMAT, version=FEATURES_VERSION, stream=state["modality"],
                          classes=json.dumps(state["classes"]), checkpoint_epoch=state["epoch"])
        file.create_dataset("video_ids", data=video_ids, dtype=strings)
        file.create_dataset("splits", data=[split_of[v] for v in video_ids], dtype=strings)
        file.create_dataset("labels", data=np.array([item[2] for item in dataset.items], np.int64))
        file.create_dataset("features", data=features.astype(np.float32))


def read_features(path: Path) -> StreamFeatures:
    """Load a features file written by :func:`extract_features`."""
    try:
        file = h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise FileError(path, f"cannot read features: {exc} (delete it and re-run the pipeline)") from exc
    with file:
        if file.attrs.get("format") != FEATURES_FORMAT:
            raise FileError(path, f"not a {FEATURES_FORMAT} file")
        return StreamFeatures(
            stream=str(file.attrs["stream"]),
            classes=json.loads(file.attrs["classes"]),
            video_ids=[v.decode() for v in file["video_ids"][()]],
            splits=[s.decode() for s in file["splits"][()]],
            labels=file["labels"][()],
            features=file["features"][()],
        )
