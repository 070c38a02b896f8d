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

Decoding on the training device (``ShardClipDataset(..., encoded=True)``, chosen by
:func:`decodes_on_device`): items are then :class:`EncodedClip` (the clip's JPEG
bytes and its :class:`ViewPlan`), :func:`collate_clips` keeps a batch of them as a
list, and ``model_input`` decodes all of its JPEGs in one batched ``decode_jpeg``
call on the device (nvjpeg on CUDA) and cuts the views there. Both paths build the
same plan from the same random draws and apply it with :func:`apply_plan`; they
differ only in the scale-jitter resize (OpenCV in the workers, ``torch`` bilinear
interpolation on the device: at most a grey level apart on the test shards) and,
on CUDA, in the JPEG decoder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate
from torchvision.io import ImageReadMode, decode_jpeg

from tclsta.data.augment import multiscale_box, resize_clip
from tclsta.data.shards import ShardReader
from tclsta.errors import BadConfigError

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


@dataclass(frozen=True)
class ViewPlan:
    """Where a clip's views lie in its frames, drawn before decoding: one box per view (top, left, height,
    width), whether each view is mirrored, the size every view is resized to (multi-scale training crops;
    ``None``: no resize), and whether the views are stacked (10 test crops) or the one view is the clip."""

    boxes: tuple[tuple[int, int, int, int], ...]
    flips: tuple[bool, ...]
    size: tuple[int, int] | None = None
    stacked: bool = False


@dataclass(frozen=True)
class EncodedClip:
    """A clip before decoding: its JPEGs (RGB frames, or flow x/y components), which decoded images form
    each of its T frames (``rows[t]``: one RGB image, or the 2L flow components of the stack), its plan."""

    modality: str
    jpegs: list[bytes]
    rows: list[list[int]]
    plan: ViewPlan


Resize = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]


def opencv_resize(clip: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a uint8 CPU clip (T, C, h, w) with OpenCV (:func:`tclsta.data.augment.resize_clip`)."""
    return torch.from_numpy(resize_clip(clip.numpy(), size))


def torch_resize(clip: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a uint8 clip (T, C, h, w) on its device, rounded back to uint8 (OpenCV's pixel centres,
    no antialiasing; OpenCV's fixed-point arithmetic makes the two differ by about a grey level)."""
    resized = torch.nn.functional.interpolate(clip.float(), size=size, mode="bilinear", align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def view_plan(height: int, width: int, spec: ClipSpec, generator: torch.Generator | None) -> ViewPlan:
    """The views of a ``height`` x ``width`` clip: random (training; multi-scale with ``spec.scale_jitter``) or
    centre crop, a random flip in training when enabled; at test time with ``spec.test_crops == 10`` the four
    corner crops and the centre crop, each also mirrored."""
    if generator is None:
        ch, cw = min(spec.crop_size[0], height), min(spec.crop_size[1], width)
        centre = crop_box(height, width, (ch, cw), None)
        if spec.test_crops == 1:
            return ViewPlan(((*centre, ch, cw),), (False,))
        corners = [(0, 0), (0, width - cw), (height - ch, 0), (height - ch, width - cw), centre]
        boxes = tuple((top, left, ch, cw) for top, left in corners)
        return ViewPlan(boxes * 2, (False,) * 5 + (True,) * 5, stacked=True)
    size = None
    if spec.scale_jitter:
        box, size = multiscale_box(height, width, generator), tuple(spec.crop_size)
    else:
        box = (*crop_box(height, width, spec.crop_size, generator), min(spec.crop_size[0], height), min(spec.crop_size[1], width))
    flip = spec.flip and float(torch.rand(1, generator=generator)) < 0.5
    return ViewPlan((box,), (flip,), size)


def apply_plan(frames: torch.Tensor, plan: ViewPlan, modality: str, resize: Resize) -> torch.Tensor:
    """The views of uint8 frames (T, C, H, W): (T, C, h, w), or (V, T, C, h, w) when stacked. Only the crops are
    copied: cropping is the first step after decoding, before any conversion."""
    views = []
    for (top, left, height, width), flip in zip(plan.boxes, plan.flips):
        view = frames[..., top : top + height, left : left + width]
        if plan.size is not None and (height, width) != plan.size:
            view = resize(view, plan.size)
        views.append(_mirror(view, modality) if flip else view.contiguous())
    return torch.stack(views) if plan.stacked else views[0]


def _mirror(clip: torch.Tensor, modality: str) -> torch.Tensor:
    """Horizontal mirror of uint8 (T, C, H, W); mirrored x-flow changes sign (quantised: q -> 255 - q)."""
    clip = clip.flip(-1)
    if modality == "flow":
        clip[:, 0::2] = 255 - clip[:, 0::2]
    return clip


def test_views(clip: torch.Tensor, spec: ClipSpec) -> torch.Tensor:
    """Test-time views of uint8 frames (T, C, H, W) (:func:`view_plan` without a generator)."""
    return apply_plan(clip, view_plan(clip.shape[2], clip.shape[3], spec, None), spec.modality, opencv_resize)


def decode_clips(clips: Sequence[EncodedClip], device: torch.device | str, resize: Resize = torch_resize) -> list[torch.Tensor]:
    """Encoded clips of one modality -> their uint8 views on ``device``: every JPEG decoded in one batched
    ``decode_jpeg`` call there (nvjpeg on CUDA), then each plan applied."""
    mode = ImageReadMode.RGB if clips[0].modality == "rgb" else ImageReadMode.GRAY
    images = decode_jpegs([jpeg for clip in clips for jpeg in clip.jpegs], mode, device)
    views, start = [], 0
    for clip in clips:
        frames = torch.stack([images[start + i] for row in clip.rows for i in row])  # (T * k, 3 or 1, H, W), one copy
        frames = frames.view(len(clip.rows), -1, *frames.shape[2:])  # (T, C, H, W): k = 1 RGB image or 2L flow components
        start += len(clip.jpegs)
        views.append(apply_plan(frames, clip.plan, clip.modality, resize))
    return views


def decodes_on_device(decode_device: str, device: torch.device | str) -> bool:
    """``train.decode_device``: ``auto`` decodes the JPEGs on the training/scoring device when it is CUDA,
    ``cpu`` (and ``auto`` elsewhere) in the DataLoader workers."""
    return decode_device == "auto" and torch.device(device).type == "cuda"


def _check_crop(crop: tuple[int, int], height: int, width: int, video_id: str, shard: Path) -> None:
    """Refuse a crop larger than a video's frames (it would silently be the whole frame instead)."""
    if crop[0] > height or crop[1] > width:
        raise BadConfigError("train.crop_size", f"[{crop[0]}, {crop[1]}] is larger than the {width}x{height} frames of "
                                                f"'{video_id}' ({shard}); set it to at most [{height}, {width}], or raise "
                                                "preprocess.short_side")


class ShardClipDataset(Dataset):
    """Clips of the videos ``video_ids`` found in ``shard_paths``; ``encoded``: items are :class:`EncodedClip`,
    for :func:`clip_loader` and ``model_input`` to decode on the device."""

    def __init__(self, shard_paths: Sequence[Path], video_ids: Sequence[str], labels: Sequence[int], spec: ClipSpec, seed: int = 0,
                 encoded: bool = False):
        if spec.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {spec.modality!r}")
        self.spec = spec
        self.seed = seed
        self.encoded = encoded
        self.epoch = 0
        wanted = dict(zip(video_ids, labels))
        self.items: list[tuple[Path, str, int, int]] = []  # (shard, video_id, label, num_frames)
        self.frame_sizes: list[tuple[int, int]] = []  # (height, width) of each item's frames and flow
        for path in shard_paths:
            with ShardReader(path) as reader:
                for video_id in reader.video_ids:
                    if video_id in wanted:
                        record = reader.record(video_id)
                        self.items.append((Path(path), video_id, wanted[video_id], record.num_frames))
                        self.frame_sizes.append((record.height, record.width))
                        _check_crop(spec.crop_size, record.height, record.width, video_id, path)
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

    def __getitem__(self, index: int) -> tuple[torch.Tensor | EncodedClip, int]:
        clip = self.encoded_clip(index)
        return (clip if self.encoded else decode_clips([clip], "cpu", opencv_resize)[0]), self.items[index][2]

    def encoded_clip(self, index: int) -> EncodedClip:
        """Item ``index``'s JPEGs and plan: segments, flow windows and views drawn in that order."""
        path, video_id, _, num_frames = self.items[index]
        spec = self.spec
        generator = None
        if spec.train:
            generator = torch.Generator().manual_seed(hash((self.seed, self.epoch, index)) & 0x7FFFFFFF)
        reader = self._reader(path)
        if spec.modality == "rgb":
            picks = segment_indices(num_frames, spec.num_frames, generator)
            jpegs, rows = reader.frames(video_id, picks), [[t] for t in range(len(picks))]
        else:
            windows = flow_windows(num_frames, spec, generator)
            needed = sorted(set(np.concatenate(windows).tolist()))
            jpegs, rows = reader.flow_jpegs(video_id, needed), flow_rows(needed, windows)  # only the pairs used
        return EncodedClip(spec.modality, jpegs, rows, view_plan(*self.frame_sizes[index], spec, generator))


def collate_clips(batch: list[tuple[torch.Tensor | EncodedClip, int]]) -> tuple[torch.Tensor | list[EncodedClip], torch.Tensor]:
    """Batches of decoded clips are stacked; encoded clips stay a list, for ``model_input`` to decode on the device."""
    if isinstance(batch[0][0], EncodedClip):
        return [clip for clip, _ in batch], default_collate([label for _, label in batch])
    return default_collate(batch)


def clip_loader(dataset: ShardClipDataset, **kwargs) -> DataLoader:
    """A DataLoader over ``dataset`` (decoded or encoded clips); ``kwargs`` go to ``DataLoader``."""
    return DataLoader(dataset, collate_fn=collate_clips, **kwargs)


def decode_jpegs(jpegs: Sequence[bytes], mode: ImageReadMode, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """JPEGs -> (C, H, W) uint8 images on ``device``, decoded in one batched call (nvjpeg on CUDA)."""
    data = [torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in jpegs]  # a writable copy of ~25 kB each
    return decode_jpeg(data, mode=mode, device=device)


def decode_flow_jpegs(jpegs: Sequence[bytes]) -> np.ndarray:
    """Flow pairs as stored (greyscale JPEGs, x and y of each pair in turn) -> (n, 2, H, W) uint8."""
    components = torch.stack(decode_jpegs(jpegs, ImageReadMode.GRAY)).numpy()  # (2n, 1, H, W)
    return components.reshape(-1, 2, *components.shape[2:])


def rgb_clip(images: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB frames -> (T, 3, H, W) uint8 (a view)."""
    return images.transpose(0, 3, 1, 2)


def model_input(clips: torch.Tensor | list[EncodedClip], device: torch.device | str) -> torch.Tensor:
    """uint8 clips (..., C, H, W) from this dataset -> float32 model input on ``device``.

    RGB (C = 3) is ImageNet-normalised, flow (C = 2L, always even) mapped back to [-1, 1].
    The conversion runs after the copy, on the device, so the copy moves uint8. A batch of
    encoded clips is decoded on the device first (:func:`decode_clips`).
    """
    if isinstance(clips, list):
        clips = torch.stack(decode_clips(clips, device))
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


def flow_rows(pair_indices: list[int], windows: list[np.ndarray]) -> list[list[int]]:
    """For each window, the positions of its pairs' x and y components (x0 y0 x1 y1 ...) among the components
    of the pairs ``pair_indices`` stored in turn (x, y of each pair)."""
    position = {p: i for i, p in enumerate(pair_indices)}
    return [[2 * position[p] + c for p in window for c in (0, 1)] for window in windows]


def flow_clip(pairs: np.ndarray, pair_indices: list[int], windows: list[np.ndarray]) -> np.ndarray:
    """Quantised pairs (n, 2, H, W) uint8 at ``pair_indices`` -> stacked windows (T, 2L, H, W) uint8."""
    return pairs.reshape(-1, *pairs.shape[2:])[np.array(flow_rows(pair_indices, windows))]
