"""HDF5 shards: the one place that writes and reads packed videos.

On-disk layout of a shard (``shard_<k>.h5``)::

    /                      attrs: format="tclsta-shard", version=1
    /video_ids             (N,) variable-length UTF-8 strings; entry i is stored in /videos/<i>
    /videos/<i>/           one group per video
        attrs              video_id, class_name, label (0-based), source_path, source_size
                           (bytes), source_mtime (seconds), height, width, num_frames
        frames             (num_frames,) variable-length uint8: one JPEG (RGB) per frame
            attrs          settings: JSON of the extraction settings that made them
        flow               (num_frames - 1, 2, height, width) uint8: TV-L1 flow x/y between
                           frames t and t+1, clipped to +-bound and quantised as
                           round((f + bound) * 255 / (2 * bound)); gzip, one chunk per pair
            attrs          bound; settings: JSON of the TV-L1 settings that made it

The extraction and flow stages write partial shards (``frames`` only, ``flow``
only) with the same writer; the pack stage merges them. When a shard is
rebuilt (videos added), the stages copy what the previous shard already holds
for unchanged videos (same source size and mtime, same settings) instead of
recomputing it. Every shard is
written to a temporary file and renamed when complete, so a file under the
final name is always whole. Readers open files without HDF5 file locking
(safe for read-only use, and needed on many shared filesystems).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Sequence

import h5py
import numpy as np

from tclsta.atomic import atomic_path
from tclsta.errors import BadShardError

SHARD_FORMAT = "tclsta-shard"
SHARD_VERSION = 1


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


class ShardWriter:
    """Write videos into a new shard; the file appears under ``path`` only on a clean close.

    >>> with ShardWriter(path) as writer:
    ...     writer.add(record, frames=jpeg_list, flow=flow_uint8)
    """

    def __init__(self, path: str | Path, flow_bound: float | None = None):
        self.path = Path(path)
        self.flow_bound = flow_bound
        self._atomic = atomic_path(self.path)
        self._file: h5py.File | None = None
        self._ids: list[str] = []

    def __enter__(self) -> "ShardWriter":
        tmp = self._atomic.__enter__()
        self._file = h5py.File(tmp, "w", locking=False)
        self._file.attrs["format"] = SHARD_FORMAT
        self._file.attrs["version"] = SHARD_VERSION
        self._file.create_group("videos")
        return self

    def add(
        self,
        record: VideoRecord,
        frames: Sequence[bytes] | None = None,
        flow: np.ndarray | None = None,
        frame_settings: str = "",
        flow_settings: str = "",
    ) -> None:
        """Append one video; ``frames`` are JPEG bytes, ``flow`` is (T-1, 2, H, W) uint8.

        The settings strings record how frames and flow were made, so that a later
        run with other settings does not reuse them.
        """
        assert self._file is not None, "use ShardWriter as a context manager"
        group = self._file["videos"].create_group(str(len(self._ids)))
        group.attrs.update(asdict(record))
        if frames is not None:
            data = group.create_dataset("frames", (len(frames),), dtype=h5py.vlen_dtype(np.uint8))
            for i, jpeg in enumerate(frames):
                data[i] = np.frombuffer(jpeg, dtype=np.uint8)
            data.attrs["settings"] = frame_settings
        if flow is not None:
            if flow.dtype != np.uint8 or flow.ndim != 4 or flow.shape[1] != 2:
                raise ValueError(f"flow of {record.video_id} must be (T-1, 2, H, W) uint8, got {flow.shape} {flow.dtype}")
            chunks = (1, *flow.shape[1:]) if len(flow) else None
            data = group.create_dataset("flow", data=flow, chunks=chunks, compression="gzip", compression_opts=1)
            data.attrs["bound"] = self.flow_bound
            data.attrs["settings"] = flow_settings
        self._ids.append(record.video_id)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._file is not None
        try:
            if exc_type is None:
                self._file.create_dataset("video_ids", data=self._ids, dtype=h5py.string_dtype())
        finally:
            self._file.close()
            self._atomic.__exit__(exc_type, exc, tb)


class ShardReader:
    """Random access to the videos of one shard (opened read-only, without file locking)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._file = h5py.File(self.path, "r", locking=False)
            if self._file.attrs.get("format") != SHARD_FORMAT:
                raise BadShardError(self.path, "not a TCLSTA shard (missing format attribute)")
            ids = [v.decode("utf-8") if isinstance(v, bytes) else v for v in self._file["video_ids"][()]]
        except (OSError, KeyError) as exc:
            raise BadShardError(self.path, f"cannot read: {exc}") from exc
        self._index = {video_id: str(i) for i, video_id in enumerate(ids)}

    @property
    def video_ids(self) -> list[str]:
        return list(self._index)

    def _group(self, video_id: str) -> h5py.Group:
        try:
            return self._file["videos"][self._index[video_id]]
        except KeyError as exc:
            raise BadShardError(self.path, f"video {video_id!r} missing") from exc

    def record(self, video_id: str) -> VideoRecord:
        attrs = self._group(video_id).attrs
        return VideoRecord(
            video_id=str(attrs["video_id"]),
            class_name=str(attrs["class_name"]),
            label=int(attrs["label"]),
            source_path=str(attrs["source_path"]),
            height=int(attrs["height"]),
            width=int(attrs["width"]),
            num_frames=int(attrs["num_frames"]),
            source_size=int(attrs.get("source_size", -1)),
            source_mtime=float(attrs.get("source_mtime", -1.0)),
        )

    def frames(self, video_id: str, indices: Sequence[int] | None = None) -> list[bytes]:
        """JPEG bytes of the frames at ``indices`` (all frames when None)."""
        try:
            data = self._group(video_id)["frames"]
            picked = range(len(data)) if indices is None else indices
            return [data[i].tobytes() for i in picked]
        except (OSError, KeyError) as exc:
            raise BadShardError(self.path, f"frames of {video_id!r} unreadable: {exc}") from exc

    def flow(self, video_id: str) -> np.ndarray:
        """All quantised flow pairs of a video as (T-1, 2, H, W) uint8."""
        return self.flow_pairs(video_id, slice(None))

    def flow_pairs(self, video_id: str, indices: Sequence[int] | slice) -> np.ndarray:
        """Quantised flow pairs at increasing ``indices`` as (n, 2, H, W) uint8."""
        try:
            return self._group(video_id)["flow"][indices]
        except (OSError, KeyError) as exc:
            raise BadShardError(self.path, f"flow of {video_id!r} unreadable: {exc}") from exc

    def flow_bound(self, video_id: str) -> float:
        return float(self._group(video_id)["flow"].attrs["bound"])

    def settings(self, video_id: str, kind: str) -> str | None:
        """The settings string stored with a video's ``frames`` or ``flow`` (None when absent)."""
        group = self._group(video_id)
        return str(group[kind].attrs.get("settings", "")) if kind in group else None

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ShardReader":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
