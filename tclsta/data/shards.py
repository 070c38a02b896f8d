"""HDF5 shards: the one place that writes and reads packed videos.

On-disk layout of a shard (``shard_<k>.h5``, HDF5's latest file format, whose
metadata carries checksums)::

    /                      attrs: format="tclsta-shard", version=3, video_ids_crc32
    /video_ids             (N,) variable-length UTF-8 strings; entry i is stored in /videos/<i>
    /videos/<i>/           one group per video
        attrs              video_id, class_name, label (0-based), source_path, source_size
                           (bytes), source_mtime (seconds), height, width, num_frames,
                           record_crc32
        frames             (num_frames,) variable-length uint8: one JPEG (RGB) per frame
            attrs          settings: JSON of the extraction settings that made them
                           (fixed-length UTF-8 bytes, so in checksummed metadata);
                           crc32: (num_frames,) uint32, the CRC-32 of each JPEG
        flow               (2 * (num_frames - 1),) variable-length uint8: TV-L1 flow between
                           frames t and t+1, clipped to +-bound, quantised as
                           round((f + bound) * 255 / (2 * bound)) and stored as greyscale
                           JPEGs (what denseflow and mmaction2 store): entry 2t is pair t's
                           x component, 2t + 1 its y component
            attrs          bound; settings: JSON of the TV-L1 settings (with the JPEG quality)
                           that made it (as for frames); crc32 as for frames

The CRC-32 attributes cover what HDF5 does not checksum itself (variable-length
data lives in its unchecked global heap): ``crc32`` every frame and flow JPEG,
``video_ids_crc32`` the newline-joined ids, ``record_crc32`` the record's JSON
(:meth:`VideoRecord.crc32`). A reader checks them, and HDF5 its metadata
checksums, on every read, so a damaged shard raises :class:`BadShardError`
naming it instead of yielding wrong frames or flow. Version 2 shards (flow as
gzip-compressed uint8) are refused with that error: rebuild them.

The extraction and flow stages write partial shards (``frames`` only, ``flow``
only) with the same writer; the pack stage merges them. When a shard is
rebuilt (videos added), the stages copy what the previous shard already holds
for unchanged videos (same source size and mtime, same settings) instead of
recomputing it. Every shard is
written to a temporary file and renamed when complete, so a file under the
final name is always whole; a failed write (disk full) raises
:class:`ShardWriteError` and leaves nothing. Readers open files without HDF5
file locking (safe for read-only use, and needed on many shared filesystems).
"""

from __future__ import annotations

import json
import os
import re
import zlib
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Iterator, Sequence

import h5py
import numpy as np

from tclsta.atomic import atomic_path
from tclsta.errors import BadShardError, ShardWriteError

SHARD_FORMAT = "tclsta-shard"
SHARD_VERSION = 3


def crc32(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def ids_crc32(video_ids: Sequence[str]) -> int:
    """CRC-32 of a shard's video ids, newline-joined."""
    return crc32("\n".join(video_ids).encode("utf-8"))


@dataclass(frozen=True)
class VideoRecord:
    """Per-video metadata stored as attributes of its group."""

    video_id: str
    class_name: str
    label: int
    source_path: str
    height: int
    width: int
    num_frames: int
    source_size: int = -1
    source_mtime: float = -1.0

    def same_source(self, other: "VideoRecord") -> bool:
        """Same video file, unchanged (path, size, mtime) and the same label."""
        keys = ("video_id", "class_name", "label", "source_path", "source_size", "source_mtime")
        return all(getattr(self, k) == getattr(other, k) for k in keys)

    def crc32(self) -> int:
        """CRC-32 of the record as sorted-key JSON (floats round-trip exactly through ``repr``)."""
        return crc32(json.dumps(asdict(self), sort_keys=True).encode("utf-8"))


@contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Turn an HDF5/OS write failure (disk full, quota) into ShardWriteError naming the shard."""
    try:
        yield
    except (OSError, RuntimeError) as exc:  # h5py raises either, depending on where HDF5 failed
        raise ShardWriteError(path, _failure_reason(exc)) from exc


def _failure_reason(exc: Exception) -> str:
    """The system's reason for a failed HDF5 write ("No space left on device"), else HDF5's message."""
    errno = getattr(exc, "errno", None)
    if not errno:
        match = re.search(r"errno = (\d+)", str(exc))  # HDF5 names the system error inside its message
        errno = int(match.group(1)) if match else None
    return os.strerror(errno) if errno else str(exc)


def _add_jpegs(group: h5py.Group, name: str, jpegs: Sequence[bytes], settings: str) -> h5py.Dataset:
    """A dataset of JPEGs with their settings and CRC-32s."""
    data = group.create_dataset(name, (len(jpegs),), dtype=h5py.vlen_dtype(np.uint8))
    for i, jpeg in enumerate(jpegs):
        data[i] = np.frombuffer(jpeg, dtype=np.uint8)
    data.attrs["settings"] = np.bytes_(settings.encode("utf-8"))
    data.attrs["crc32"] = np.array([crc32(jpeg) for jpeg in jpegs], dtype=np.uint32)
    return data


class ShardWriter:
    """Write videos into a new shard; the file appears under ``path`` only on a clean close.

    >>> with ShardWriter(path) as writer:
    ...     writer.add(record, frames=jpeg_list, flow=flow_jpegs)
    """

    def __init__(self, path: str | Path, flow_bound: float | None = None):
        self.path = Path(path)
        self.flow_bound = flow_bound
        self._atomic = atomic_path(self.path)
        self._file: h5py.File | None = None
        self._ids: list[str] = []

    def __enter__(self) -> "ShardWriter":
        tmp = self._atomic.__enter__()
        try:
            with _writing(self.path):
                self._file = h5py.File(tmp, "w", locking=False, libver="latest")
                self._file.attrs["format"] = SHARD_FORMAT
                self._file.attrs["version"] = SHARD_VERSION
                self._file.create_group("videos")
        except BaseException as exc:
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def add(
        self,
        record: VideoRecord,
        frames: Sequence[bytes] | None = None,
        flow: Sequence[bytes] | None = None,
        frame_settings: str = "",
        flow_settings: str = "",
    ) -> None:
        """Append one video; ``frames`` are JPEG bytes, ``flow`` greyscale JPEGs of the quantised
        flow, the x and then the y component of each pair (:func:`tclsta.flow.encode_flow`).

        The settings strings record how frames and flow were made, so that a later
        run with other settings does not reuse them.
        """
        assert self._file is not None, "use ShardWriter as a context manager"
        if flow is not None and (len(flow) % 2 or not all(isinstance(jpeg, bytes) for jpeg in flow)):
            raise ValueError(f"flow of {record.video_id} must be JPEG bytes, x and y of each pair in turn "
                             f"(an even number), got {len(flow)} {type(flow).__name__}")
        with _writing(self.path):
            group = self._file["videos"].create_group(str(len(self._ids)))
            group.attrs.update(asdict(record))
            group.attrs["record_crc32"] = record.crc32()
            # The datasets stay open until the flush: closing one can write, and a failed write there
            # (a full disk) would only be printed by a destructor, not raised.
            datasets = [_add_jpegs(group, kind, jpegs, settings) for kind, jpegs, settings in
                        (("frames", frames, frame_settings), ("flow", flow, flow_settings)) if jpegs is not None]
            if flow is not None:
                datasets[-1].attrs["bound"] = self.flow_bound
            self._file.flush()  # a full disk fails here, not later in a destructor that cannot report it
        self._ids.append(record.video_id)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._file is not None
        try:
            with _writing(self.path):
                try:
                    if exc is None:
                        self._file.create_dataset("video_ids", data=self._ids, dtype=h5py.string_dtype())
                        self._file.attrs["video_ids_crc32"] = ids_crc32(self._ids)
                finally:
                    self._file.close()  # data is flushed here: a full disk often shows up only now
        except ShardWriteError as failure:
            if exc is None:
                self._atomic.__exit__(ShardWriteError, failure, failure.__traceback__)  # removes the temporary file
                raise
        self._atomic.__exit__(exc_type, exc, tb)


class ShardReader:
    """Random access to the videos of one shard (opened read-only, without file locking).

    Every read is checked (HDF5 checksums and the stored CRC-32s); a damaged or
    unreadable shard raises :class:`BadShardError` naming the file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with self._reading("cannot read"):
            self._file = h5py.File(self.path, "r", locking=False)
        try:
            self._index = self._check_index()
        except BaseException:
            self._file.close()
            raise

    def _check_index(self) -> dict[str, str]:
        """Video id -> group name, after checking the format, version and ids' checksum."""
        with self._reading("cannot read"):
            if self._file.attrs.get("format") != SHARD_FORMAT:
                raise BadShardError(self.path, "not a TCLSTA shard (missing format attribute)")
            if self._file.attrs.get("version") != SHARD_VERSION:
                raise BadShardError(self.path, f"shard format version {self._file.attrs.get('version')}, "
                                               f"this TCLSTA reads version {SHARD_VERSION}")
            ids = [v.decode("utf-8") if isinstance(v, bytes) else v for v in self._file["video_ids"][()]]
            if ids_crc32(ids) != self._file.attrs["video_ids_crc32"]:
                raise BadShardError(self.path, "video ids fail their checksum")
        return {video_id: str(i) for i, video_id in enumerate(ids)}

    @contextmanager
    def _reading(self, what: str) -> Iterator[None]:
        """Turn an HDF5 error (a checksum mismatch, damaged metadata) into BadShardError."""
        try:
            yield
        except (OSError, KeyError, ValueError, UnicodeDecodeError) as exc:
            raise BadShardError(self.path, f"{what}: {exc}") from exc

    @property
    def video_ids(self) -> list[str]:
        return list(self._index)

    def _group(self, video_id: str) -> h5py.Group:
        if video_id not in self._index:
            raise BadShardError(self.path, f"video {video_id!r} missing")
        return self._file["videos"][self._index[video_id]]

    def record(self, video_id: str) -> VideoRecord:
        with self._reading(f"metadata of {video_id!r} unreadable"):
            attrs = self._group(video_id).attrs
            record = VideoRecord(
                video_id=str(attrs["video_id"]),
                class_name=str(attrs["class_name"]),
                label=int(attrs["label"]),
                source_path=str(attrs["source_path"]),
                height=int(attrs["height"]),
                width=int(attrs["width"]),
                num_frames=int(attrs["num_frames"]),
                source_size=int(attrs["source_size"]),
                source_mtime=float(attrs["source_mtime"]),
            )
            if record.video_id != video_id or record.crc32() != attrs["record_crc32"]:
                raise BadShardError(self.path, f"metadata of {video_id!r} fails its checksum")
        return record

    def frames(self, video_id: str, indices: Sequence[int] | None = None) -> list[bytes]:
        """JPEG bytes of the frames at ``indices`` (all frames when None)."""
        return self._jpegs(video_id, "frames", indices)

    def flow_jpegs(self, video_id: str, pairs: Sequence[int] | None = None) -> list[bytes]:
        """Greyscale JPEGs of the quantised flow pairs at ``pairs`` (all when None), x and y of each
        pair in turn (decoded by :func:`tclsta.data.dataset.decode_flow_jpegs`)."""
        return self._jpegs(video_id, "flow", None if pairs is None else [2 * p + c for p in pairs for c in (0, 1)])

    def _jpegs(self, video_id: str, kind: str, indices: Sequence[int] | None) -> list[bytes]:
        """The JPEGs of ``kind`` at ``indices``, each checked against its CRC-32."""
        with self._reading(f"{kind} of {video_id!r} unreadable"):
            data = self._group(video_id)[kind]
            checksums = data.attrs["crc32"]
            picked = range(len(data)) if indices is None else indices
            jpegs = [data[i].tobytes() for i in picked]
            for i, jpeg in zip(picked, jpegs):
                if crc32(jpeg) != checksums[i]:
                    what = f"frame {i}" if kind == "frames" else f"flow pair {i // 2} ({'xy'[i % 2]})"
                    raise BadShardError(self.path, f"{what} of {video_id!r} fails its checksum")
        return jpegs

    def flow_bound(self, video_id: str) -> float:
        with self._reading(f"flow of {video_id!r} unreadable"):
            return float(self._group(video_id)["flow"].attrs["bound"])

    def settings(self, video_id: str, kind: str) -> str | None:
        """The settings string stored with a video's ``frames`` or ``flow`` (None when absent)."""
        with self._reading(f"{kind} of {video_id!r} unreadable"):
            group = self._group(video_id)
            return group[kind].attrs["settings"].decode("utf-8") if kind in group else None

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ShardReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
