"""Extraction, flow and packing on real videos; bad videos are named and nothing half-written is kept."""

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, tiny_settings
from tclsta.config import PreprocessConfig
from tclsta.data.manifest import build_ucf_manifest, read_manifest
from tclsta.data.shards import ShardReader
from tclsta.errors import BadVideoError
from tclsta.preprocess import extract_shard
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
                assert reader.flow(video_id).shape == (11, 2, 48, 64)
            seen += reader.video_ids
        assert pd.read_csv(tiny_dataset.rejected[shard]).empty
    assert sorted(seen) == sorted(manifest["video_id"])


def test_flow_in_shard_shows_the_class_motion(tiny_dataset):
    """DriftRight clips move right inside the action window: positive mean x-flow somewhere."""
    with ShardReader(tiny_dataset.shards[0]) as a, ShardReader(tiny_dataset.shards[1]) as b:
        for reader in (a, b):
            for video_id in reader.video_ids:
                if video_id.startswith("DriftRight/"):
                    flow_x = reader.flow(video_id)[:, 0].astype(float) - 127.5
                    assert flow_x.mean(axis=(1, 2)).max() > 0.5


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
