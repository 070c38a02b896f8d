"""A torch Dataset of clips read from HDF5 shards.

Each item is ``(clip, label)`` with ``clip`` shaped (T, C, H, W) uint8
(with 10 test crops: (10, T, C, H, W)):
T frames spread over the video in equal segments (TSN-style: a random frame
per segment in training, the segment's centre at test time), C = 3 for the
static (RGB) stream and C = 2L for the motion stream (L consecutive flow x/y
pairs stacked, quantised as in the shards). Shards are opened lazily, once per
worker process.

Clips stay uint8 until the batch is on the device: ``model_input`` converts it
there (ImageNet normalisation for RGB, [-1, 1] for flow), so workers decode and
crop only, and a quarter of the bytes cross from the workers and to the device.
JPEGs, RGB frames and greyscale flow components alike, are decoded by
``torchvision.io.decode_jpeg`` (libjpeg-turbo, straight to channels-first),
all of a clip in one batched call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_jpeg

from tclsta.data.augment import multiscale_crop
from tclsta.data.shards import ShardReader

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
MODALITIES = ("rgb", "flow")


@dataclass(frozen=True)
class ClipSpec:
    """How clips are cut from a video."""

    modality: str  # "rgb" or "flow"
    num_frames: int  # T
    crop_size: tuple[int, int]  # (height, width)
    flow_stack: int = 5  # L, motion stream only
    train: bool = False
    flip: bool = False
    test_crops: int = 1  # test time: 1 (centre) or 10 (4 corners + centre, each also mirrored)
    scale_jitter: bool = False  # training: TSN multi-scale corner crops (tclsta/data/augment.py)

    @property
    def channels(self) -> int:
        return stream_channels(self.modality, self.flow_stack)


def stream_channels(modality: str, flow_stack: int) -> int:
    """Input channels of a stream: 3 (RGB), or 2L for L stacked flow x/y pairs."""
    return 3 if modality == "rgb" else 2 * flow_stack


def segment_indices(num_positions: int, num_segments: int, generator: torch.Generator | None) -> list[int]:
    """One index per equal segment of ``range(num_positions)``: random within it, or its centre."""
    edges = np.linspace(0, num_positions, num_segments + 1)
    if generator is None:
        picks = (edges[:-1] + edges[1:]) / 2
    else:
        offsets = torch.rand(num_segments, generator=generator).numpy()
        picks = edges[:-1] + offsets * (edges[1:] - edges[:-1])
    return np.clip(np.floor(picks).astype(int), 0, num_positions - 1).tolist()


def crop_box(height: int, width: int, crop: tuple[int, int], generator: torch.Generator | None) -> tuple[int, int]:
    """Top-left corner of a random (training) or centred crop."""
    ch, cw = min(crop[0], height), min(crop[1], width)
    if generator is None:
        return (height - ch) // 2, (width - cw) // 2
    top = int(torch.randint(0, height - ch + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - cw + 1, (1,), generator=generator))
    return top, left


class ShardClipDataset(Dataset):
    """Clips of the videos ``video_ids`` found in ``shard_paths``."""

    def __init__(self, shard_paths: Sequence[Path], video_ids: Sequence[str], labels: Sequence[int], spec: ClipSpec, seed: int = 0):
        if spec.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {spec.modality!r}")
        self.spec = spec
        self.seed = seed
        self.epoch = 0
        wanted = dict(zip(video_ids, labels))
        self.items: list[tuple[Path, str, int, int]] = []  # (shard, video_id, label, num_frames)
        for path in shard_paths:
            with ShardReader(path) as reader:
                for video_id in reader.video_ids:
                    if video_id in wanted:
                        self.items.append((Path(path), video_id, wanted[video_id], reader.record(video_id).num_frames))
        self._readers: dict[Path, ShardReader] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self.items)

    def _reader(self, path: Path) -> ShardReader:
        if self._pid != os.getpid():  # a fresh worker process: never share HDF5 handles across fork
            self._readers, self._pid = {}, os.getpid()
        if path not in self._readers:
            self._readers[path] = ShardReader(path)
        return self._readers[path]

    def set_epoch(self, epoch: int) -> None:
        """Training samples differ per epoch but are reproducible from (seed, epoch, index)."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, video_id, label, num_frames = self.items[index]
        spec = self.spec
        generator = None
        if spec.train:
            generator = torch.Generator().manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFFFFFF)
        reader = self._reader(path)
        if spec.modality == "rgb":
            picks = segment_indices(num_frames, spec.num_frames, generator)
            clip = decode_jpegs(reader.frames(video_id, picks), ImageReadMode.RGB)
        else:
            windows = flow_windows(num_frames, spec, generator)
            needed = sorted(set(np.concatenate(windows).tolist()))
            pairs = decode_flow_jpegs(reader.flow_jpegs(video_id, needed))  # only the pairs used
            clip = flow_clip(pairs, needed, windows)
        if spec.train:
            return torch.from_numpy(crop_and_flip(clip, spec, generator)), label
        return torch.from_numpy(test_views(clip, spec)), label


def decode_jpegs(jpegs: Sequence[bytes], mode: ImageReadMode) -> np.ndarray:
    """JPEGs of one size -> (N, C, H, W) uint8, decoded in one batched call."""
    data = [torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in jpegs]  # a writable copy of ~25 kB each
    return torch.stack(decode_jpeg(data, mode=mode)).numpy()


def decode_flow_jpegs(jpegs: Sequence[bytes]) -> np.ndarray:
    """Flow pairs as stored (greyscale JPEGs, x and y of each pair in turn) -> (n, 2, H, W) uint8."""
    components = decode_jpegs(jpegs, ImageReadMode.GRAY)  # (2n, 1, H, W)
    return components.reshape(-1, 2, *components.shape[2:])


def rgb_clip(images: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames -> (T, 3, H, W) uint8 (a view)."""
    return images.transpose(0, 3, 1, 2)


def model_input(clips: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """uint8 clips (..., C, H, W) from this dataset -> float32 model input on ``device``.

    RGB (C = 3) is ImageNet-normalised, flow (C = 2L, always even) mapped back to [-1, 1].
    The conversion runs after the copy, on the device, so the copy moves uint8.
    """
    clips = clips.to(device, non_blocking=True)
    if clips.shape[-3] == 3:
        mean = torch.tensor(IMAGENET_MEAN * 255.0, device=clips.device).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD * 255.0, device=clips.device).view(3, 1, 1)
        return (clips.float() - mean) / std
    return clips.float() * (2.0 / 255.0) - 1.0


def flow_windows(num_frames: int, spec: ClipSpec, generator: torch.Generator | None) -> list[np.ndarray]:
    """For each of the T segments, the indices of L consecutive flow pairs (short videos repeat the last)."""
    starts = segment_indices(max(1, num_frames - spec.flow_stack), spec.num_frames, generator)
    return [np.minimum(np.arange(s, s + spec.flow_stack), num_frames - 2) for s in starts]


def flow_clip(pairs: np.ndarray, pair_indices: list[int], windows: list[np.ndarray]) -> np.ndarray:
    """Quantised pairs (n, 2, H, W) uint8 at ``pair_indices`` -> stacked windows (T, 2L, H, W) uint8."""
    position = {p: i for i, p in enumerate(pair_indices)}
    return np.stack([pairs[[position[p] for p in w]].reshape(-1, *pairs.shape[2:]) for w in windows])


def _mirror(clip: np.ndarray, modality: str) -> np.ndarray:
    """Horizontal mirror of uint8 (T, C, H, W); mirrored x-flow changes sign (quantised: q -> 255 - q)."""
    clip = clip[..., ::-1].copy()
    if modality == "flow":
        clip[:, 0::2] = 255 - clip[:, 0::2]
    return clip


def test_views(clip: np.ndarray, spec: ClipSpec) -> np.ndarray:
    """Test-time crops of (T, C, H, W): the centre crop (T, C, h, w), or with ``spec.test_crops == 10``
    the four corner crops and the centre crop, each also mirrored: (10, T, C, h, w)."""
    if spec.test_crops == 1:
        return crop_and_flip(clip, spec, None)
    (height, width), (ch, cw) = clip.shape[2:], (min(spec.crop_size[0], clip.shape[2]), min(spec.crop_size[1], clip.shape[3]))
    corners = [(0, 0), (0, width - cw), (height - ch, 0), (height - ch, width - cw), crop_box(height, width, (ch, cw), None)]
    crops = [clip[:, :, top : top + ch, left : left + cw] for top, left in corners]
    return np.stack(crops + [_mirror(c, spec.modality) for c in crops])


def crop_and_flip(clip: np.ndarray, spec: ClipSpec, generator: torch.Generator | None) -> np.ndarray:
    """Random (training; multi-scale with ``spec.scale_jitter``) or centre crop of uint8 (T, C, H, W); random
    horizontal flip in training when enabled. Only the crop is copied: it is the first step after decoding,
    before any conversion."""
    if generator is not None and spec.scale_jitter:
        clip = multiscale_crop(clip, spec.crop_size, generator)
    else:
        top, left = crop_box(clip.shape[2], clip.shape[3], spec.crop_size, generator)
        clip = clip[:, :, top : top + spec.crop_size[0], left : left + spec.crop_size[1]]
    if generator is not None and spec.flip and float(torch.rand(1, generator=generator)) < 0.5:
        return _mirror(clip, spec.modality)
    return np.ascontiguousarray(clip)
