"""Shards back out as rawframes: the mmaction2 layout that :mod:`tclsta.data.rawframes` imports.

``python -m tclsta export-rawframes --manifest results/<dataset>/manifest.csv --shards results/<dataset>/shards/shard_*.h5
--output <dir>`` writes::

    <dir>/<video_id>/img_00001.jpg ...      each frame's JPEG as the shard stores it
    <dir>/<video_id>/flow_x_00001.jpg ...   flow from frame t to t + 1, x and y, the shard's greyscale JPEGs
    <dir>/<video_id>/flow_y_00001.jpg ...   (encoded with the shard's flow bound: 20 unless flow.bound says otherwise)
    <dir>/train_list.txt, test_list.txt     mmaction2 annotation lists, ``<video_id> <total_frames> <label>``
                                            (0-based labels); train_list holds the manifest's train and
                                            validation videos (the import carves validation again), test_list its test videos
    <dir>/classes.txt                       the class names in label order (mmaction2's label map)
    <dir>/rawframes.json                    {"flow_bound": ...}: what ``rawframes.flow_bound`` must be on import

Every JPEG is copied byte for byte, none decoded or encoded, so importing the folder with ``flow.bound`` equal to
the flow bound gives shards with the same bytes. Each video's folder is written under a temporary name and renamed
when whole, the lists last and atomically; one video is in memory at a time.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Sequence

import pandas as pd

from tclsta.atomic import write_text_atomic
from tclsta.data.rawframes import FLOW_PREFIXES, FRAME_PREFIX
from tclsta.data.shards import ShardReader
from tclsta.errors import FileError
from tclsta.preprocess import progress

log = logging.getLogger(__name__)
LISTS = {"train_list.txt": ("train", "val"), "test_list.txt": ("test",)}


def write_video_folder(shard: ShardReader, video_id: str, folder: Path) -> int:
    """One video's frames and flow from ``shard`` as ``folder`` (replaced whole); returns its frame count."""
    staging = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)  # left by a run that was killed
    staging.mkdir(parents=True)
    frames = shard.frames(video_id)
    for t, jpeg in enumerate(frames, 1):
        (staging / f"{FRAME_PREFIX}{t:05d}.jpg").write_bytes(jpeg)
    flow = shard.flow_jpegs(video_id)  # x and y of each pair in turn
    x_prefix, y_prefix = FLOW_PREFIXES[0]
    for t, (x, y) in enumerate(zip(flow[0::2], flow[1::2]), 1):
        (staging / f"{x_prefix}{t:05d}.jpg").write_bytes(x)
        (staging / f"{y_prefix}{t:05d}.jpg").write_bytes(y)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(staging, folder)
    return len(frames)


def export_rawframes(manifest: pd.DataFrame, shards: Sequence[Path], out_dir: Path) -> None:
    """Write the videos of ``shards`` as rawframes folders with mmaction2 lists under ``out_dir`` (layout above)."""
    out_dir = Path(out_dir)
    classes = manifest[["label", "class_name"]].drop_duplicates().sort_values("label")["class_name"].tolist()
    split_of = manifest.set_index("video_id")["split"]
    counts, bounds = {}, set()
    for path in shards:
        with ShardReader(path) as shard:
            for video_id in progress(shard.video_ids, f"rawframes of {Path(path).name}"):
                if video_id not in split_of:
                    raise FileError(path, f"holds {video_id!r}, which the manifest lacks: pass the dataset's own manifest")
                counts[video_id] = write_video_folder(shard, video_id, out_dir / video_id)
                bounds.add(shard.flow_bound(video_id))
    if len(bounds) > 1:
        raise FileError(Path(shards[0]).parent, f"the shards' flow bounds differ ({sorted(bounds)}): one folder holds one bound")
    labels = manifest.set_index("video_id")["label"]
    for name, splits in LISTS.items():
        lines = [f"{video_id} {counts[video_id]} {labels[video_id]}\n" for video_id in sorted(counts) if split_of[video_id] in splits]
        write_text_atomic(out_dir / name, "".join(lines))
    write_text_atomic(out_dir / "classes.txt", "".join(f"{name}\n" for name in classes))
    write_text_atomic(out_dir / "rawframes.json", json.dumps({"flow_bound": bounds.pop() if bounds else None}) + "\n")
    log.info("%d videos as rawframes in %s (lists: %s, classes.txt)", len(counts), out_dir, ", ".join(LISTS))
