"""Preprocessing stages, one shard of videos per call: extract frames, compute flow, pack.

Each stage reads and writes whole shards (see :mod:`tclsta.data.shards`), so a
dataset of thousands of videos is a few dozen jobs, not one job per video.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from tclsta.atomic import atomic_path
from tclsta.config import FlowConfig, PreprocessConfig
from tclsta.data.shards import ShardReader, ShardWriter, VideoRecord
from tclsta.errors import BadShardError, BadVideoError, as_bad_video
from tclsta.flow import in_order, shard_flow
from tclsta.progress import progress
from tclsta.settings import StageSettings
from tclsta.video import video_jpegs

log = logging.getLogger(__name__)
EXTRACT_SETTINGS = StageSettings("extract", preprocess=("short_side", "jpeg_quality", "min_frames", "on_bad_video", "max_frame_pixels",
                                                       "max_video_frames", "max_video_seconds"))
PACK_SETTINGS = StageSettings("pack", flow=("bound",))
REJECTED_COLUMNS = ["video_id", "path", "reason"]


def open_previous(path: Path | None) -> ShardReader | None:
    """The shard an earlier run packed, to reuse its unchanged videos; None when absent or unreadable."""
    if path is None or not Path(path).is_file():
        return None
    try:
        return ShardReader(path)
    except BadShardError as exc:
        log.warning("not reusing %s", exc)
        return None


def reusable(previous: ShardReader | None, record: VideoRecord, kind: str, settings: str) -> bool:
    """True when ``previous`` holds this unchanged video's ``frames``/``flow`` made with ``settings``."""
    if previous is None or record.video_id not in previous.video_ids:
        return False
    return previous.record(record.video_id).same_source(record) and previous.settings(record.video_id, kind) == settings


def source_record(row, height: int = 0, width: int = 0, num_frames: int = 0) -> VideoRecord:
    """The record of a manifest row, with the file's current size and mtime."""
    stat = Path(row.path).stat()
    return VideoRecord(row.video_id, row.class_name, int(row.label), row.path, height, width, num_frames,
                       stat.st_size, stat.st_mtime)


def extract_shard(
    manifest: pd.DataFrame,
    shard: int,
    config: PreprocessConfig,
    out_path: Path,
    rejected_path: Path,
    previous: Path | None = None,
    workers: int = 1,
) -> None:
    """Decode the videos of ``shard``, resize them and store their frames as JPEG.

    ``workers`` videos are decoded (ffmpeg) and encoded (libjpeg-turbo) at once in
    threads, so probing, decoding and encoding overlap; they are written in
    video-id order. Videos that ``previous`` (the shard packed by an earlier run)
    holds unchanged are copied, not decoded again. Bad videos are collected, not
    fatal one by one: with ``on_bad_video: fail`` the stage raises one error naming
    every bad video of the shard and writes nothing; with ``skip`` it leaves them
    out and lists them in ``rejected_path``.
    """
    videos = list(manifest[manifest["shard"] == shard].sort_values("video_id").itertuples(index=False))
    settings = json.dumps({"short_side": config.short_side, "jpeg_quality": config.jpeg_quality})
    rejected: list[tuple[str, str, str]] = []
    old = open_previous(previous)
    reused = {row.video_id for row in videos if Path(row.path).is_file() and reusable(old, source_record(row), "frames", settings)}

    def extract(row) -> tuple[VideoRecord, list[bytes]]:
        if not Path(row.path).is_file():
            raise BadVideoError(row.path, "file not found")
        record = source_record(row)
        jpegs, height, width = video_jpegs(Path(row.path), config.short_side, config.jpeg_quality, limits=config)
        if len(jpegs) < config.min_frames:
            raise BadVideoError(row.path, f"{len(jpegs)} frames, fewer than preprocess.min_frames={config.min_frames}")
        return dataclasses.replace(record, height=height, width=width, num_frames=len(jpegs)), jpegs

    todo = [row for row in videos if row.video_id not in reused]
    with ShardWriter(out_path) as writer, ThreadPoolExecutor(max(1, workers)) as pool:
        extracted = in_order(extract, todo, pool, ahead=2 * max(1, workers))
        for row in progress(videos, f"frames shard {shard}"):
            if row.video_id in reused:
                writer.add(old.record(row.video_id), frames=old.frames(row.video_id), frame_settings=settings)
                continue
            try:
                record, jpegs = next(extracted).result()
            except Exception as exc:  # whatever goes wrong with one video is that video's error
                error = as_bad_video(row.path, exc)
                log.warning("%s", error)
                rejected.append((row.video_id, row.path, error.reason))
                continue
            writer.add(record, frames=jpegs, frame_settings=settings)
            log.info("extracted %s: %d frames %dx%d", row.video_id, record.num_frames, record.width, record.height)
        collect_rejected(rejected, config, shard)
    if old is not None:
        old.close()
    log.info("shard %d: %d videos extracted, %d reused, %d rejected", shard, len(todo) - len(rejected), len(reused), len(rejected))
    write_rejected(rejected, rejected_path)


def collect_rejected(rejected: list[tuple[str, str, str]], config: PreprocessConfig, shard: int,
                     error: type[BadVideoError] = BadVideoError) -> None:
    """With ``on_bad_video: fail``, one ``error`` naming every bad video ``(video_id, path, reason)`` of the shard."""
    if rejected and config.on_bad_video == "fail":
        listing = "\n".join(f"  {path}: {reason}" for _, path, reason in rejected)
        raise error(
            rejected[0][1],
            f"{len(rejected)} {error.what}(s) in shard {shard} (set preprocess.on_bad_video: skip to leave them out):\n{listing}",
        )


def write_rejected(rejected: list[tuple[str, str, str]], path: Path) -> None:
    """The shard's list of videos left out (``on_bad_video: skip``), as CSV."""
    with atomic_path(path) as tmp:
        pd.DataFrame(rejected, columns=REJECTED_COLUMNS).to_csv(tmp, index=False)


def flow_settings(config: FlowConfig) -> str:
    """The TV-L1 settings that determine the flow values (backend and batch size are left out)."""
    values = dataclasses.asdict(config)
    values.pop("backend")
    values.pop("batch_pairs")
    return json.dumps(values, sort_keys=True)


def flow_shard(frames_path: Path, config: FlowConfig, out_path: Path, workers: int = 1, previous: Path | None = None) -> None:
    """TV-L1 flow of every video in a frames shard (backends: :func:`tclsta.flow.shard_flow`).

    Videos whose flow ``previous`` (the shard packed by an earlier run) holds
    unchanged, made with the same settings (JPEG quality included), are copied
    as they are stored.
    """
    settings = flow_settings(config)
    old = open_previous(previous)
    with ShardReader(frames_path) as reader, ShardWriter(out_path, flow_bound=config.bound) as writer:
        ids = reader.video_ids
        todo = [v for v in ids if not reusable(old, reader.record(v), "flow", settings)]
        computed = shard_flow(todo, reader.frames, config, workers)
        try:
            pending = set(todo)
            for video_id in progress(ids, f"flow {frames_path.name}"):
                flow = next(computed) if video_id in pending else old.flow_jpegs(video_id)
                writer.add(reader.record(video_id), flow=flow, flow_settings=settings)
                log.info("flow %s: %d pairs%s", video_id, len(flow) // 2, "" if video_id in pending else " (reused)")
        finally:
            computed.close()  # stops the worker pool, restores torch's threads
            if old is not None:
                old.close()


def pack_shard(frames_path: Path, flow_path: Path, out_path: Path, bound: float) -> None:
    """Merge a frames shard and its flow shard into the final shard (JPEG bytes copied as they are)."""
    with ShardReader(frames_path) as frames, ShardReader(flow_path) as flows, ShardWriter(out_path, bound) as writer:
        if frames.video_ids != flows.video_ids:
            raise ValueError(f"{frames_path} and {flow_path} hold different videos; delete both and re-run")
        for video_id in progress(frames.video_ids, f"pack {out_path.name}"):
            writer.add(frames.record(video_id), frames=frames.frames(video_id), flow=flows.flow_jpegs(video_id),
                       frame_settings=frames.settings(video_id, "frames"), flow_settings=flows.settings(video_id, "flow"))
            log.info("packed %s", video_id)
