"""Extraction, flow and packing on real videos; bad videos are named and nothing half-written is kept."""

import dataclasses
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, tiny_settings
from tclsta.config import PreprocessConfig
from tclsta.data.dataset import decode_flow_jpegs
from tclsta.data.manifest import build_ucf_manifest, read_manifest
from tclsta.data.shards import ShardReader
from tclsta.errors import BadVideoError
from tclsta.flow import create_tvl1, grey_frames, video_flow
from tclsta.preprocess import extract_shard, flow_shard
from tclsta.video import decode_frames


def test_shards_hold_every_video_with_frames_and_flow(tiny_dataset):
    manifest = read_manifest(tiny_dataset.manifest_path)
    seen = []
    for shard, path in enumerate(tiny_dataset.shards):
        with ShardReader(path) as reader:
            expected = sorted(manifest.loc[manifest["shard"] == shard, "video_id"])
            assert reader.video_ids == expected
            for video_id in reader.video_ids:
                record = reader.record(video_id)
                assert (record.num_frames, record.height, record.width) == (12, 48, 64)
                assert len(reader.frames(video_id)) == 12
                assert decode_flow_jpegs(reader.flow_jpegs(video_id)).shape == (11, 2, 48, 64)
            seen += reader.video_ids
        assert pd.read_csv(tiny_dataset.rejected[shard]).empty
    assert sorted(seen) == sorted(manifest["video_id"])


def test_flow_in_shard_shows_the_class_motion(tiny_dataset):
    """DriftRight clips move right inside the action window: positive mean x-flow somewhere."""
    with ShardReader(tiny_dataset.shards[0]) as a, ShardReader(tiny_dataset.shards[1]) as b:
        for reader in (a, b):
            for video_id in reader.video_ids:
                if video_id.startswith("DriftRight/"):
                    flow_x = decode_flow_jpegs(reader.flow_jpegs(video_id))[:, 0].astype(float) - 127.5
                    assert flow_x.mean(axis=(1, 2)).max() > 0.5


def test_stored_flow_decodes_close_to_the_quantised_flow(tiny_dataset):
    """The shard's flow JPEGs (quality 95) against the quantised TV-L1 flow of the same frames: mean error
    under a quarter level (0.04 px at bound 20), 99% within one level."""
    config = tiny_dataset.config.flow
    errors = []
    with ShardReader(tiny_dataset.shards[0]) as reader:
        for video_id in reader.video_ids[:4]:
            quantised = video_flow(grey_frames(reader.frames(video_id)), create_tvl1(config), config.bound)
            errors.append(np.abs(decode_flow_jpegs(reader.flow_jpegs(video_id)).astype(int) - quantised.astype(int)))
    error = np.concatenate(errors)
    assert error.mean() < 0.25 and (error <= 1).mean() > 0.99


def test_flow_is_copied_from_the_previous_shard_unless_its_settings_changed(tiny_dataset, tmp_path, caplog):
    frames, previous = tiny_dataset.shards[0].with_name("frames_0.h5"), tiny_dataset.shards[0]
    caplog.set_level(logging.INFO, logger="tclsta.preprocess")
    flow_shard(frames, tiny_dataset.config.flow, tmp_path / "same.h5", previous=previous)
    lower = dataclasses.replace(tiny_dataset.config.flow, jpeg_quality=50)
    flow_shard(frames, lower, tmp_path / "q50.h5", previous=previous)
    with ShardReader(previous) as old, ShardReader(tmp_path / "same.h5") as same, ShardReader(tmp_path / "q50.h5") as q50:
        assert caplog.text.count("(reused)") == len(old.video_ids)  # the first run only
        for video_id in old.video_ids:
            assert same.flow_jpegs(video_id) == old.flow_jpegs(video_id)  # copied byte for byte
            assert '"jpeg_quality": 50' in q50.settings(video_id, "flow")
            assert sum(map(len, q50.flow_jpegs(video_id))) < sum(map(len, old.flow_jpegs(video_id)))


def corrupt_copy(tiny_videos: Path, tmp_path: Path, damage) -> tuple[pd.DataFrame, Path]:
    root = tmp_path / "ds"
    shutil.copytree(tiny_videos, root)
    manifest = build_ucf_manifest(root / "videos", root / "splits", 1, 0.5, 2, 0)
    victim = Path(manifest["path"].iloc[0])
    damage(victim)
    return manifest, victim


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda p: p.write_bytes(b"this is not a video" * 50), "corrupt"),
        (lambda p: p.write_bytes(b""), "empty file"),
    ],
)
def test_bad_video_fails_the_shard_naming_it(tiny_videos, tmp_path, damage, reason):
    manifest, victim = corrupt_copy(tiny_videos, tmp_path, damage)
    shard = int(manifest["shard"].iloc[0])
    out, rejected = tmp_path / "frames.h5", tmp_path / "rejected.csv"
    with pytest.raises(BadVideoError) as info:
        extract_shard(manifest, shard, PreprocessConfig(short_side=None), out, rejected)
    assert str(victim) in str(info.value) and reason in str(info.value)
    assert not out.exists() and not rejected.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_skip_keeps_the_good_videos_and_lists_the_bad(tiny_videos, tmp_path):
    manifest, victim = corrupt_copy(tiny_videos, tmp_path, lambda p: p.write_bytes(b"garbage" * 100))
    shard = int(manifest["shard"].iloc[0])
    out, rejected = tmp_path / "frames.h5", tmp_path / "rejected.csv"
    extract_shard(manifest, shard, PreprocessConfig(short_side=None, on_bad_video="skip"), out, rejected)
    listed = pd.read_csv(rejected)
    assert listed["path"].tolist() == [str(victim)]
    with ShardReader(out) as reader:
        expected = set(manifest.loc[manifest["shard"] == shard, "video_id"]) - {manifest["video_id"].iloc[0]}
        assert set(reader.video_ids) == expected


def test_too_short_video_is_bad_input(tiny_videos, tmp_path):
    manifest = build_ucf_manifest(tiny_videos / "videos", tiny_videos / "splits", 1, 0.5, 2, 0)
    config = PreprocessConfig(short_side=None, min_frames=20)
    with pytest.raises(BadVideoError, match="fewer than preprocess.min_frames=20"):
        extract_shard(manifest, 0, config, tmp_path / "f.h5", tmp_path / "r.csv")


def test_resize_keeps_aspect(tiny_dataset, tmp_path):
    manifest = read_manifest(tiny_dataset.manifest_path)
    extract_shard(manifest, 0, PreprocessConfig(short_side=32), tmp_path / "f.h5", tmp_path / "r.csv")
    with ShardReader(tmp_path / "f.h5") as reader:
        record = reader.record(reader.video_ids[0])
        assert (record.height, record.width) == (32, 42)
        assert decode_frames(Path(record.source_path)).shape[1:3] == (48, 64)


def test_cli_reports_bad_video_without_traceback(tiny_videos, tmp_path):
    manifest, victim = corrupt_copy(tiny_videos, tmp_path, lambda p: p.write_bytes(b"x" * 500))
    manifest_path = tmp_path / "manifest.csv"
    manifest.to_csv(manifest_path, index=False)
    import json

    settings = json.dumps(tiny_settings(tmp_path / "ds"))
    result = subprocess.run(
        [sys.executable, "-m", "tclsta", "extract", "--settings", settings, "--shard", str(manifest["shard"].iloc[0]),
         "--manifest", str(manifest_path), "--output", str(tmp_path / "out.h5"), "--rejected", str(tmp_path / "rej.csv")],
        capture_output=True, text=True, cwd=REPO,
    )
    assert result.returncode == 2
    assert str(victim) in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.h5").exists()
