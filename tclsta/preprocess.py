"""Preprocessing stages, one shard of videos per call: extract frames, compute flow, pack.

Each stage reads and writes whole shards (see :mod:`tclsta.data.shards`), so a
dataset of thousands of videos is a few dozen jobs, not one job per video.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from tclsta.atomic import atomic_path
from tclsta.config import FlowConfig, PreprocessConfig
from tclsta.data.shards import ShardReader, ShardWriter, VideoRecord
from tclsta.errors import BadShardError, BadVideoError, as_bad_video
from tclsta.flow import shard_flow
from tclsta.settings import StageSettings
from tclsta.video import decode_frames, encode_jpeg

log = logging.getLogger(__name__)
EXTRACT_SETTINGS = StageSettings("extract", preprocess=("short_side", "jpeg_quality", "min_frames", "on_bad_video", "max_frame_pixels",
                                                       "max_video_frames", "max_video_seconds"))
PACK_SETTINGS = StageSettings("pack", flow=("bound",))
REJECTED_COLUMNS = ["video_id", "path", "reason"]


def _progress(items, desc: str):
    """tqdm bar for interactive runs; plain log lines (no bar) in job logs."""
    return tqdm(items, desc=desc, disable=None, mininterval=5)


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
) -> None:
    """Decode the videos of ``shard``, resize them and store their frames as JPEG.

    Videos that ``previous`` (the shard packed by an earlier run) holds unchanged
    are copied, not decoded again. Bad videos are collected, not fatal one by
    one: with ``on_bad_video: fail`` the stage raises one error naming every bad
    video of the shard and writes nothing; with ``skip`` it leaves them out and
    lists them in ``rejected_path``.
    """
    videos = manifest[manifest["shard"] == shard].sort_values("video_id")
    settings = json.dumps({"short_side": config.short_side, "jpeg_quality": config.jpeg_quality})
    rejected: list[tuple[str, str, str]] = []
    old = open_previous(previous)
    reused = 0
    with ShardWriter(out_path) as writer:
        for row in _progress(videos.itertuples(index=False), f"frames shard {shard}"):
            try:
                if not Path(row.path).is_file():
                    raise BadVideoError(row.path, "file not found")
                record = source_record(row)
                if reusable(old, record, "frames", settings):
                    writer.add(old.record(row.video_id), frames=old.frames(row.video_id), frame_settings=settings)
                    reused += 1
                    continue
                frames = decode_frames(Path(row.path), config.short_side, limits=config)
                if len(frames) < config.min_frames:
                    raise BadVideoError(row.path, f"{len(frames)} frames, fewer than preprocess.min_frames={config.min_frames}")
            except BadShardError:  # the previous shard, not this video
                raise
            except Exception as exc:  # whatever else goes wrong with one video is that video's error
                error = as_bad_video(row.path, exc)
                log.warning("%s", error)
                rejected.append((row.video_id, row.path, error.reason))
                continue
            record = dataclasses.replace(record, height=frames.shape[1], width=frames.shape[2], num_frames=len(frames))
            writer.add(record, frames=[encode_jpeg(f, config.jpeg_quality) for f in frames], frame_settings=settings)
            log.info("extracted %s: %d frames %dx%d", row.video_id, len(frames), record.width, record.height)
        if rejected and config.on_bad_video == "fail":
            listing = "\n".join(f"  {path}: {reason}" for _, path, reason in rejected)
            raise BadVideoError(
                rejected[0][1],
                f"{len(rejected)} bad video(s) in shard {shard} (set preprocess.on_bad_video: skip to leave them out):\n{listing}",
            )
    if old is not None:
        old.close()
    log.info("shard %d: %d videos extracted, %d reused, %d rejected", shard, len(videos) - reused - len(rejected), reused, len(rejected))
    with atomic_path(rejected_path) as tmp:
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
    unchanged, made with the same settings, are copied.
    """
    settings = flow_settings(config)
    old = open_previous(previous)
    with ShardReader(frames_path) as reader, ShardWriter(out_path, flow_bound=config.bound) as writer:
        ids = reader.video_ids
        todo = [v for v in ids if not reusable(old, reader.record(v), "flow", settings)]
        computed = shard_flow(todo, reader.frames, config, workers)
        try:
            pending = set(todo)
            for video_id in _progress(ids, f"flow {frames_path.name}"):
                flow = next(computed) if video_id in pending else old.flow(video_id)
                writer.add(reader.record(video_id), flow=flow, flow_settings=settings)
                log.info("flow %s: %d pairs%s", video_id, len(flow), "" if video_id in pending else " (reused)")
        finally:
            computed.close()  # stops the worker pool, restores torch's threads
            if old is not None:
                old.close()


def pack_shard(frames_path: Path, flow_path: Path, out_path: Path, bound: float) -> None:
    """Merge a frames shard and its flow shard into the final shard."""
    with ShardReader(frames_path) as frames, ShardReader(flow_path) as flows, ShardWriter(out_path, bound) as writer:
        if frames.video_ids != flows.video_ids:
            raise ValueError(f"{frames_path} and {flow_path} hold different videos; delete both and re-run")
        for video_id in frames.video_ids:
            writer.add(frames.record(video_id), frames=frames.frames(video_id), flow=flows.flow(video_id),
                       frame_settings=frames.settings(video_id, "frames"), flow_settings=flows.settings(video_id, "flow"))
            log.info("packed %s", video_id)
