"""Videos as users have them: H.264 MP4 with AAC audio at 29.97 frames/s and a phone's rotation tag, and
Xvid-tagged MPEG-4 AVI with MP3 audio at 23.976 frames/s, made with ffmpeg's own encoders.

Each is decoded by both paths (``video_jpegs``, which extraction uses without a probe, and
``decode_frames``, which probes first), and a class-per-folder dataset of both goes through the
manifest and ``extract_shard`` into a shard.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from tclsta.config import PreprocessConfig, parse_dataset
from tclsta.data.manifest import build_manifest
from tclsta.data.shards import ShardReader
from tclsta.preprocess import extract_shard
from tclsta.video import decode_frames, decode_jpeg, ffmpeg_binaries, probe_video, video_jpegs

# A black frame with a white box in its top-left corner (a quarter of each side): the box shows where
# the top-left corner ends up after rotation.
SOURCE = "color=black:size=320x240:rate={rate},drawbox=x=0:y=0:w=80:h=60:color=white:t=fill"
FRAMES = 36


def _ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_binaries()[0], "-y", "-nostdin", "-loglevel", "error", *args], check=True, capture_output=True)


def _encode(path: Path, rate: str, video: list[str], audio: list[str]) -> Path:
    """``FRAMES`` frames of ``SOURCE`` at ``rate`` with a sine tone, through the given encoders."""
    _ffmpeg("-f", "lavfi", "-i", SOURCE.format(rate=rate), "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
            "-frames:v", str(FRAMES), *video, *audio, "-shortest", str(path))
    return path


def _phone_video(folder: Path) -> Path:
    """H.264 + AAC MP4, 29.97 frames/s, tagged to be displayed rotated by 90 degrees (portrait)."""
    plain = _encode(folder / "plain.mp4", "30000/1001", ["-c:v", "libx264", "-pix_fmt", "yuv420p"], ["-c:a", "aac"])
    rotated = folder / "v_Phone_g01_c01.mp4"
    try:  # ffmpeg 5 writes the display matrix from a rotate tag; ffmpeg 6 and later take -display_rotation
        _ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rotated))
        if probe_video(rotated).width != 240:
            _ffmpeg("-display_rotation", "90", "-i", str(plain), "-c", "copy", str(rotated))
    finally:
        plain.unlink()
    return rotated


def _web_video(folder: Path) -> Path:
    """MPEG-4 Part 2 in AVI with the XVID fourcc and MP3 audio, 23.976 frames/s."""
    return _encode(folder / "v_Web_g01_c01.avi", "24000/1001",
                   ["-c:v", "mpeg4", "-vtag", "XVID", "-q:v", "3", "-pix_fmt", "yuv420p"], ["-c:a", "libmp3lame"])


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("real_world")
    (folder / "Phone").mkdir()
    (folder / "Web").mkdir()
    return {"phone": _phone_video(folder / "Phone"), "web": _web_video(folder / "Web")}


def _corners(image: np.ndarray) -> dict[str, float]:
    """Mean grey level of a 20x20 patch in each corner of an (H, W, 3) image."""
    grey = image.mean(axis=2)
    return {"top_left": grey[:20, :20].mean(), "top_right": grey[:20, -20:].mean(),
            "bottom_left": grey[-20:, :20].mean(), "bottom_right": grey[-20:, -20:].mean()}


def test_the_probe_reads_rate_rotation_and_audio_free_size(videos):
    phone, web = probe_video(videos["phone"]), probe_video(videos["web"])
    assert (phone.width, phone.height) == (240, 320)  # displayed size: the rotation applied
    assert phone.fps == pytest.approx(30000 / 1001)
    assert (web.width, web.height) == (320, 240)
    assert web.fps == pytest.approx(24000 / 1001)


@pytest.mark.parametrize("name, size, box_corner", [("phone", (342, 256), "bottom_left"), ("web", (256, 342), "top_left")])
def test_both_decoding_paths_give_every_frame_upright_at_the_short_side(videos, name, size, box_corner):
    """Every frame, short side 256, the rotation applied (a +90 degree display rotation turns the
    frame counter-clockwise: its top-left corner goes to the bottom left), the same pixels from
    both paths up to JPEG's loss, and the audio ignored."""
    jpegs, height, width = video_jpegs(videos[name], 256, 90, limits=PreprocessConfig())
    frames = decode_frames(videos[name], 256, limits=PreprocessConfig())
    assert len(jpegs) == len(frames) == FRAMES
    assert (height, width) == frames.shape[1:3] == size
    for index in (0, FRAMES - 1):
        image = decode_jpeg(jpegs[index])
        corners = _corners(image)
        assert corners.pop(box_corner) > 240, name
        assert max(corners.values()) < 15, name
        assert np.abs(image.astype(int) - frames[index].astype(int)).mean() < 3


def test_a_folder_dataset_of_both_extracts_into_one_shard(videos):
    root = videos["phone"].parent.parent
    settings = {"name": "real", "format": "folder", "root": str(root), "test_fraction": 0.5,
                "preprocess": {"num_shards": 1, "short_side": 256}, "train": {"val_fraction": 0.0, "seed": 0}}
    config = parse_dataset(settings)
    manifest = build_manifest(config)
    assert sorted(manifest["class_name"]) == ["Phone", "Web"]
    shard, rejected = root / "frames_0.h5", root / "rejected.csv"
    extract_shard(manifest, 0, config.preprocess, shard, rejected, workers=2)
    with ShardReader(shard) as reader:
        sizes = {reader.record(v).class_name: (reader.record(v).num_frames, reader.record(v).height, reader.record(v).width)
                 for v in reader.video_ids}
    assert sizes == {"Phone": (FRAMES, 342, 256), "Web": (FRAMES, 256, 342)}
    assert rejected.read_text().count("\n") <= 1  # the header line only: nothing refused
