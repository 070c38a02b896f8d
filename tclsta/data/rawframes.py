"""Existing rawframes as a dataset: frames and TV-L1 flow extracted earlier by mmaction2 or denseflow.

Layout of one video's folder (``<root>/<video>/``)::

    img_00001.jpg ...      the frames, numbered from 1 (or 0) without gaps
    flow_x_00001.jpg ...   flow between frames t and t+1, x and y as greyscale JPEGs
    flow_y_00001.jpg ...   (denseflow's older naming: x_00001.jpg, y_00001.jpg)

A flow JPEG holds round((f + b) * 255 / (2 b)) for the bound b it was written
with (``rawframes.flow_bound``, 20 for both tools): the encoding of our shards,
so with ``flow.bound`` equal to it the flow JPEGs are copied byte for byte (each
is decoded once to check it), and otherwise mapped back to pixels, quantised
with ``flow.bound`` and encoded again at ``flow.jpeg_quality``. Frame JPEGs are
copied byte for byte. Nothing is decoded from video, no flow recomputed.

Which folders make the dataset: mmaction2's annotation lists
(``rawframes.train_list`` and ``test_list``, lines ``<folder> <total_frames>
<label>`` with 0-based labels, and ``rawframes.class_list`` naming the classes),
or without lists ``<root>/<class>/<video>/`` folders, split as the ``folder``
format is (``split_csv`` or ``test_fraction``).

The import stage writes one shard per call through :class:`ShardWriter`, in the
layout of :mod:`tclsta.data.shards`. Every frame and flow file is checked as it
is copied (a regular file, never a FIFO or device; a bounded size; a JPEG of the
first frame's size that decodes whole). A folder with a missing, hostile or
damaged file, or with mismatched flow counts, is a :class:`BadFrameFolderError`
naming it, and the shard is not written (or, with ``on_bad_video: skip``, the
folder is left out and listed as rejected).
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import simplejpeg

from tclsta.config import DatasetConfig, RawframesConfig
from tclsta.data.manifest import ASCII_NUMBER, finish_manifest, labelled_table, read_class_index, require_files, resolve_inside
from tclsta.data.tables import read_text_file
from tclsta.data.shards import ShardWriter
from tclsta.errors import BadFrameFolderError, BadSplitFileError, BadVideoError
from tclsta.flow import dequantise_flow, encode_flow, quantise_flow
from tclsta.preprocess import collect_rejected, progress, source_record, write_rejected
from tclsta.settings import StageSettings, section_keys

log = logging.getLogger(__name__)
RAWFRAMES_SETTINGS = StageSettings("rawframes", entry=("root",), rawframes=section_keys("rawframes"),
                                    preprocess=("min_frames", "on_bad_video", "max_frame_pixels"), flow=("bound", "jpeg_quality"))

FRAME_PREFIX = "img_"
FLOW_PREFIXES = (("flow_x_", "flow_y_"), ("x_", "y_"))  # mmaction2 and denseflow; denseflow's older naming
_NUMBERED = re.compile(r"^(img_|flow_x_|flow_y_|x_|y_)(\d+)\.jpg$")
# A JPEG holds at most about 3 bytes a pixel (quality 100, no subsampling), plus its headers (comments,
# EXIF: up to 64 KiB each): reading stops past 4 bytes a pixel and 1 MiB, and the file is refused.
_JPEG_OVERHEAD = 1 << 20


@dataclass(frozen=True)
class FrameFolder:
    """The files of one video's folder, checked: ``frames[t]`` and ``flow_x[t]``/``flow_y[t]`` (pair t, t+1)."""

    path: Path
    frames: list[Path]
    flow_x: list[Path]
    flow_y: list[Path]


def _numbered_files(folder: Path) -> dict[str, dict[int, str]]:
    """Prefix -> {frame number: file name} of the numbered JPEGs in ``folder``."""
    try:
        names = os.listdir(folder)
    except OSError as exc:
        raise BadFrameFolderError(folder, f"cannot list it: {exc.strerror}") from exc
    numbered: dict[str, dict[int, str]] = {}
    for name in names:
        match = _NUMBERED.match(name)
        if match:
            numbered.setdefault(match.group(1), {})[int(match.group(2))] = name
    return numbered


def _run(folder: Path, files: dict[int, str], prefix: str, start: int, count: int) -> list[Path]:
    """Files numbered ``start .. start + count - 1``; the first missing one is an error naming it."""
    for number in range(start, start + count):
        if number not in files:
            raise BadFrameFolderError(folder, f"missing {prefix}{number:05d}.jpg ({count} expected from {prefix}{start:05d}.jpg)")
    return [folder / files[number] for number in range(start, start + count)]


def scan_frame_folder(folder: Path, total_frames: int | None = None) -> FrameFolder:
    """Check one video's folder: ``total_frames`` frames (all there are when None) numbered from 0 or 1
    without gaps, and one flow x/y pair for each pair of consecutive frames (a last extra pair is ignored)."""
    numbered = _numbered_files(folder)
    frames = numbered.get(FRAME_PREFIX, {})
    if not frames:
        raise BadFrameFolderError(folder, f"no frames ({FRAME_PREFIX}00001.jpg ...)")
    start = min(frames)
    count = len(frames) if total_frames is None else total_frames
    x_prefix, y_prefix = next(((x, y) for x, y in FLOW_PREFIXES if x in numbered or y in numbered), FLOW_PREFIXES[0])
    flow_x, flow_y = numbered.get(x_prefix, {}), numbered.get(y_prefix, {})
    if len(flow_x) != len(flow_y):
        raise BadFrameFolderError(folder, f"mismatched flow counts: {len(flow_x)} {x_prefix} and {len(flow_y)} {y_prefix} files")
    if len(flow_x) < count - 1:
        raise BadFrameFolderError(folder, f"{count} frames but {len(flow_x)} flow pairs ({x_prefix}, {y_prefix}); need {count - 1}")
    flow_start = min(flow_x, default=start)
    return FrameFolder(folder, _run(folder, frames, FRAME_PREFIX, start, count),
                       _run(folder, flow_x, x_prefix, flow_start, count - 1), _run(folder, flow_y, y_prefix, flow_start, count - 1))


def _read(path: Path, limit: int) -> bytes:
    """The bytes of a frame or flow file: a regular file of at most ``limit`` bytes. Anything else (a FIFO, a
    device, a link to one) is refused from its ``stat`` before it is opened; it is opened without blocking and
    read only up to the limit, so a file swapped for one in between cannot hang the import or fill memory."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise BadFrameFolderError(path.parent, f"{path.name} is not a regular file")
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as file:
            data = file.read(limit + 1)
    except OSError as exc:
        raise BadFrameFolderError(path.parent, f"cannot read {path.name}: {exc.strerror}") from exc
    if len(data) > limit:
        raise BadFrameFolderError(path.parent, f"{path.name} is over {limit} bytes, more than a JPEG of its size holds")
    return data


def _checked_jpeg(path: Path, size: tuple[int, int], grey: bool) -> tuple[bytes, np.ndarray]:
    """A frame's (``grey``: a flow component's) file bytes and its decoded image, checked: a regular file
    (:func:`_read`), a colour (a greyscale, or colour as grey) JPEG of ``size`` (height, width) that decodes whole."""
    height, width = size
    jpeg = _read(path, 4 * height * width + _JPEG_OVERHEAD)
    try:
        header = simplejpeg.decode_jpeg_header(jpeg)
        if header[:2] != size:
            raise BadFrameFolderError(path.parent, f"{path.name} is {header[1]}x{header[0]}, the folder's frames {width}x{height}")
        if header[2] == "Gray" and not grey:
            raise BadFrameFolderError(path.parent, f"{path.name} is greyscale; the frames must be colour JPEGs")
        return jpeg, simplejpeg.decode_jpeg(jpeg, colorspace="GRAY" if grey else "RGB")  # strict: truncated is an error
    except ValueError as exc:
        raise BadFrameFolderError(path.parent, f"{path.name} is not a readable JPEG ({exc})") from exc


def frame_size(folder: FrameFolder, max_pixels: int) -> tuple[int, int]:
    """(height, width) of a folder's first frame, from its JPEG header; more than ``max_pixels`` is an error."""
    first = folder.frames[0]
    try:
        height, width, _, _ = simplejpeg.decode_jpeg_header(_read(first, 4 * max_pixels + _JPEG_OVERHEAD))
    except ValueError as exc:
        raise BadFrameFolderError(folder.path, f"{first.name} is not a readable JPEG ({exc})") from exc
    if height * width > max_pixels:
        raise BadFrameFolderError(folder.path, f"{first.name} is {width}x{height}, over preprocess.max_frame_pixels={max_pixels}")
    return height, width


def read_frame_folder(folder: FrameFolder, written_bound: float, bound: float, quality: int,
                      max_pixels: int) -> tuple[list[bytes], list[bytes], int, int]:
    """The frames' JPEG bytes as they are, the flow JPEGs in the shards' encoding for ``bound`` (x and y of
    each pair in turn: the files' bytes when written with ``written_bound == bound``, else mapped to ``bound``
    and encoded at ``quality``), and the frames' height and width. Each file is checked as it is read
    (:func:`_checked_jpeg`): every frame and flow file the size of the first frame, at most ``max_pixels``."""
    height, width = frame_size(folder, max_pixels)
    jpegs = [_checked_jpeg(path, (height, width), grey=False)[0] for path in folder.frames]
    paths = [path for pair in zip(folder.flow_x, folder.flow_y) for path in pair]
    flow = np.empty((len(paths), height, width), np.uint8)  # x and y of each pair in turn
    flow_jpegs = []
    for i, path in enumerate(paths):
        jpeg, image = _checked_jpeg(path, (height, width), grey=True)
        flow_jpegs.append(jpeg)
        flow[i] = image[..., 0]
    if written_bound != bound:
        pixels = np.moveaxis(dequantise_flow(flow.reshape(-1, 2, height, width), written_bound), 1, -1)
        flow_jpegs = encode_flow(quantise_flow(pixels, bound), quality)
    return jpegs, flow_jpegs, height, width


def read_class_list(path: Path) -> list[str]:
    """Class names in label order: mmaction2's label map (one name per line) or classInd.txt (``1 Name``)."""
    if not path.is_file():
        raise BadSplitFileError(path, "class list not found")
    lines = [line.strip() for line in read_text_file(path, BadSplitFileError).splitlines() if line.strip()]
    if lines and all(re.match(r"^[0-9]+\s+\S", line) for line in lines):
        return read_class_index(path)
    if len(set(lines)) != len(lines):
        raise BadSplitFileError(path, "a class is listed twice")
    return lines


def read_annotation_list(path: Path, root: Path, classes: list[str]) -> list[tuple[str, Path, int, int]]:
    """``(video_id, folder, total_frames, label)`` for each ``<folder> <total_frames> <label>`` line."""
    if not path.is_file():
        raise BadSplitFileError(path, "annotation list not found")
    root = root.resolve()
    rows = []
    for lineno, line in enumerate(read_text_file(path, BadSplitFileError).splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 3 or not ASCII_NUMBER.fullmatch(parts[1]) or not ASCII_NUMBER.fullmatch(parts[2].removeprefix("-")):
            raise BadSplitFileError(path, f"line {lineno}: expected '<folder> <total_frames> <label>', got {line!r}")
        folder = (root / parts[0]).resolve()
        if not folder.is_relative_to(root) or folder == root:
            raise BadSplitFileError(path, f"line {lineno}: {parts[0]!r} points outside the dataset root {root}")
        label = int(parts[2])
        if not 0 <= label < len(classes):
            raise BadSplitFileError(path, f"line {lineno}: label {label} of {folder} is outside the class list "
                                          f"({len(classes)} classes, labels 0..{len(classes) - 1})")
        rows.append((parts[0].strip("/"), folder, int(parts[1]), label))
    return rows


def build_rawframes_manifest(root: Path, rawframes: RawframesConfig, val_fraction: float, num_shards: int, seed: int,
                             strict: bool = True) -> pd.DataFrame:
    """Manifest of rawframes listed by mmaction2 annotation lists (the video id is the folder below the root)."""
    classes = read_class_list(Path(rawframes.class_list))
    rows = []
    for split, listing in (("train", Path(rawframes.train_list)), ("test", Path(rawframes.test_list))):
        entries = read_annotation_list(listing, root, classes)
        require_files(listing, [folder for _, folder, _, _ in entries], strict, exists=Path.is_dir)
        rows += [(video_id, folder, classes[label], split) for video_id, folder, _, label in entries]
    return finish_manifest(labelled_table(rows, classes), classes, Path(rawframes.train_list), val_fraction, num_shards, seed)


def scan_frame_folders(root: Path) -> tuple[list[str], list[tuple[str, Path, str]]]:
    """Classes and ``(video_id, folder, class)`` of ``<root>/<class>/<video>/`` folders holding ``img_`` frames
    (``folder`` resolved; one that is a symlink leaving the root is refused, as by :func:`scan_folder`)."""
    root = Path(root).resolve()
    try:
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        videos = [(f"{c}/{folder.name}", resolve_inside(root, f"{c}/{folder.name}", root, "folder scan")[0], c)
                  for c in classes for folder in sorted((root / c).iterdir())
                  if folder.is_dir() and next(folder.glob(f"{FRAME_PREFIX}*.jpg"), None) is not None]
    except OSError as exc:
        raise BadSplitFileError(Path(exc.filename or root), f"cannot list the dataset folder: {exc.strerror}") from exc
    if not videos:
        raise BadSplitFileError(root, f"no <root>/<class>/<video>/ folders holding {FRAME_PREFIX}*.jpg frames")
    return classes, videos


def listed_frame_counts(dataset: DatasetConfig) -> dict[str, int]:
    """Video id -> total_frames from the annotation lists (empty without lists: folders are taken as they are)."""
    if not dataset.rawframes.train_list:
        return {}
    classes = read_class_list(Path(dataset.rawframes.class_list))
    return {video_id: total for listing in (dataset.rawframes.train_list, dataset.rawframes.test_list)
            for video_id, _, total, _ in read_annotation_list(Path(listing), Path(dataset.root), classes)}


def import_shard(manifest: pd.DataFrame, shard: int, dataset: DatasetConfig, out_path: Path, rejected_path: Path) -> None:
    """Write the shard of the rawframes of ``shard``'s videos: frames copied, flow in the shards' encoding
    (copied too when written with ``flow.bound``).

    Bad folders are handled as bad videos are by the extraction stage: with
    ``on_bad_video: fail`` one error names every bad folder of the shard and
    nothing is written; with ``skip`` they are left out and listed in ``rejected_path``.
    """
    videos = manifest[manifest["shard"] == shard].sort_values("video_id")
    counts = listed_frame_counts(dataset)
    written, bound, quality = dataset.rawframes.flow_bound, dataset.flow.bound, dataset.flow.jpeg_quality
    frame_settings = json.dumps({"source": "rawframes"})
    flow_settings = json.dumps({"source": "rawframes", "written_bound": written,
                                **({} if written == bound else {"jpeg_quality": quality})})
    rejected: list[tuple[str, str, str]] = []
    with ShardWriter(out_path, flow_bound=bound) as writer:
        for row in progress(videos.itertuples(index=False), f"rawframes shard {shard}"):
            try:
                folder = scan_frame_folder(Path(row.path), counts.get(row.video_id))
                if len(folder.frames) < dataset.preprocess.min_frames:
                    raise BadFrameFolderError(row.path, f"{len(folder.frames)} frames, fewer than "
                                                        f"preprocess.min_frames={dataset.preprocess.min_frames}")
                jpegs, flow, height, width = read_frame_folder(folder, written, bound, quality,
                                                                dataset.preprocess.max_frame_pixels)
            except BadVideoError as exc:
                log.warning("%s", exc)
                rejected.append((row.video_id, row.path, exc.reason))
                continue
            record = source_record(row, height, width, len(jpegs))
            writer.add(record, frames=jpegs, flow=flow, frame_settings=frame_settings, flow_settings=flow_settings)
            log.info("imported %s: %d frames %dx%d", row.video_id, len(jpegs), record.width, record.height)
        collect_rejected(rejected, dataset.preprocess, shard, BadFrameFolderError)
    write_rejected(rejected, rejected_path)
