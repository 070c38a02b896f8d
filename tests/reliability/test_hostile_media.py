"""Hostile media: videos over the size limits (refused from the header, memory bounded), headers with odd
values, playlists and other indirections; ``predict`` reports each bad video and goes on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import tiny_settings
from reliability.faults import lavfi_video, run_with_peak_rss, stage_command
from tclsta.config import PreprocessConfig
from tclsta.video import sample_frames, video_jpegs

MIB_PER_FRAME_AT_256 = 256 * 256 * 3 / 2**20  # a 16x16 frame scaled to the default short side of 256
# Rotate tags that are no number, or no finite one; extraction and predict refuse each alike.
ROTATE_TAGS = {"rotate_tag": "abc", "rotate_inf": "inf", "rotate_nan": "nan", "rotate_1e400": "1e400"}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    """Videos refused by the default limits, a header with a non-numeric rotate tag, and two playlists."""
    folder = tmp_path_factory.mktemp("hostile")
    videos = {
        "many_frames": lavfi_video(folder / "many_frames.avi", "16x16", 100, 120),  # 12,000 frames of 16x16
        "one_hour": lavfi_video(folder / "one_hour.avi", "16x16", 1, 3600),  # 3,600 frames over 1 hour
        "8k": lavfi_video(folder / "8k.avi", "7680x4320", 2, 1),  # 2 frames of 8K
    }
    # Matroska keeps any tag (ffmpeg writes its name upper-case): a rotate tag that is no number, as a phone might write.
    for name, tag in ROTATE_TAGS.items():
        rotate = lavfi_video(folder / f"{name}.mkv", "32x32", 25, 1, **{"metadata:s:v:0": f"ROTATE={tag}"})
        rotate.write_bytes(rotate.read_bytes().replace(b"ROTATE", b"rotate"))
        videos[name] = rotate
    segment = lavfi_video(folder / "segment.avi", "32x32", 25, 1, colour="red")
    videos["hls"] = folder / "hls.avi"
    videos["hls"].write_text("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:0\n"
                             f"#EXTINF:1.0,\n{segment.name}\n#EXT-X-ENDLIST\n")
    videos["concat"] = folder / "concat.avi"
    videos["concat"].write_text(f"ffconcat version 1.0\nfile '{segment.name}'\n")
    return videos


REASONS = {
    "many_frames": "12000 frames exceed preprocess.max_video_frames=10000",
    "one_hour": "3600 s exceeds preprocess.max_video_seconds=600",
    "8k": "frames of 7680x4320 (33177600 pixels) exceed preprocess.max_frame_pixels=8847360",
    "rotate_tag": "unreadable header: ValueError: could not convert string to float: 'abc'",
    "rotate_inf": "unreadable header: ValueError: rotate tag 'inf' is not a finite number",
    "rotate_nan": "unreadable header: ValueError: rotate tag 'nan' is not a finite number",
    "rotate_1e400": "unreadable header: ValueError: rotate tag '1e400' is not a finite number",
    "hls": "a hls playlist, not a media file",
    "concat": "a concat playlist, not a media file",
}


def test_extraction_names_every_hostile_video_with_bounded_memory(hostile, tiny_videos, tmp_path):
    manifest = pd.DataFrame([(name, str(path), "DriftLeft", 1, "train", name, 0) for name, path in hostile.items()],
                            columns=["video_id", "path", "class_name", "label", "split", "group", "shard"])
    manifest.to_csv(tmp_path / "manifest.csv", index=False)
    settings = tiny_settings(tiny_videos)
    settings["preprocess"].update(short_side=256, num_shards=1)  # default limits
    command = stage_command("extract", settings, "--shard", "0", "--manifest", tmp_path / "manifest.csv",
                            "--output", tmp_path / "frames.h5", "--rejected", tmp_path / "rejected.csv")
    run, peak_mib = run_with_peak_rss(command, tmp_path)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-3000:]
    assert f"{len(hostile)} bad video(s) in shard 0" in run.stderr
    for name, reason in REASONS.items():
        assert f"{hostile[name]}: {reason}" in run.stderr
    # Refused from the header: decoding the 12,000 frames at the short side would hold about 2.2 GiB.
    assert peak_mib < 12_000 * MIB_PER_FRAME_AT_256 / 4, peak_mib
    assert not (tmp_path / "frames.h5").exists()


def test_predict_reports_each_bad_video_and_goes_on(hostile, tiny_results, tiny_videos, tmp_path):
    good = sorted((tiny_videos / "videos").rglob("*.avi"))[0]
    bad = ["8k", "concat", *ROTATE_TAGS]
    videos = [good, *(hostile[name] for name in bad)]
    run = run_predict(tiny_results, videos)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-3000:]
    results = json.loads(run.stdout)
    assert [r["video"] for r in results] == [str(v) for v in videos]
    assert len(results[0]["top5"]) == 4
    for result, name in zip(results[1:], bad):  # refused for the reason extraction gives
        assert result["error"] == f"bad video {hostile[name]}: {REASONS[name]}"
        assert result["error"] in run.stderr


def test_predict_decodes_only_the_frames_it_samples(tiny_results, tiny_videos, tmp_path):
    """2,000 frames of 640x480 are 1.7 GiB decoded; the predictor keeps the few its clips use."""
    long_video = lavfi_video(tmp_path / "long.avi", "640x480", 25, 80)
    short_video = sorted((tiny_videos / "videos").rglob("*.avi"))[0]
    peaks = []
    for video in (short_video, long_video):
        command = [sys.executable, "-m", "tclsta", "predict", str(tiny_results), str(video), "--json", "--device", "cpu"]
        run, peak_mib = run_with_peak_rss(command, tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
        assert len(json.loads(run.stdout)[0]["top5"]) == 4
        peaks.append(peak_mib)
    assert peaks[1] - peaks[0] < 300, peaks  # MiB more than for a 12-frame 64x48 video


def run_predict(results: Path, videos: list[Path]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tclsta", "predict", str(results), *map(str, videos), "--json",
                           "--device", "cpu"], capture_output=True, text=True, timeout=300)


def test_predict_decodes_what_extraction_does_of_frames_that_grow_past_the_limit(tmp_path):
    """12 frames of 64x48, then 2 of 8K after them (streams concatenated): the header says 64x48. Extraction
    and predict alike leave the 8K frames to ffmpeg's -max_pixels, which refuses them before decoding."""
    parts = [lavfi_video(tmp_path / f"{size}.m4v", size, 25, seconds, f="m4v") for size, seconds in (("64x48", 0.48), ("7680x4320", 0.08))]
    switch = tmp_path / "switch.mp4"
    switch.write_bytes(b"".join(part.read_bytes() for part in parts))
    limits = PreprocessConfig()  # 4096x2160
    count, _ = sample_frames(switch, lambda n: [0, n - 1], 256, limits)  # what predict decodes
    jpegs, _, _ = video_jpegs(switch, 256, 90, limits)  # what extraction decodes
    assert count == len(jpegs) == 12
