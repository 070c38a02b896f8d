"""Decoding real files with real ffmpeg: shapes, colours, odd names and the errors users see."""

from __future__ import annotations

import shutil
from pathlib import Path

import subprocess

import ffmpeg
import imageio_ffmpeg
import numpy as np
import pytest

import tclsta.video as video
from tclsta.config import PreprocessConfig
from tclsta.errors import BadVideoError
from tclsta.video import (VideoInfo, decode_frames, decode_jpeg, encode_jpeg, probe_video, sample_frames, scaled_size,
                          video_jpegs)

WIDTH, HEIGHT, NUM_FRAMES = 64, 48, 10
# One solid colour per frame, so that channel order and frame order are both checked.
FRAME_COLOURS = np.array([(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30), (30, 200, 200)] * 2, np.uint8)


def _encode_avi(path: Path, frames: np.ndarray) -> None:
    """Write ``(T, H, W, 3)`` RGB frames as mpeg4 AVI at 25 fps."""
    _, height, width, _ = frames.shape
    (
        ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}", framerate=25)
        .output(str(path), vcodec="mpeg4", pix_fmt="yuv420p", **{"qscale:v": 2})
        .global_args("-loglevel", "error")
        .run(cmd=video.ffmpeg_binaries()[0], input=frames.tobytes(), capture_stdout=True, capture_stderr=True)
    )


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 64x48, 10-frame AVI whose frames are solid ``FRAME_COLOURS``."""
    path = tmp_path_factory.mktemp("video") / "tiny.avi"
    frames = np.broadcast_to(FRAME_COLOURS[:, None, None, :], (NUM_FRAMES, HEIGHT, WIDTH, 3))
    _encode_avi(path, np.ascontiguousarray(frames))
    return path


@pytest.fixture(scope="module")
def audio_only_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("audio") / "tone.m4a"
    (
        ffmpeg.input("sine=frequency=440:duration=0.5", format="lavfi")
        .output(str(path))
        .global_args("-loglevel", "error")
        .run(cmd=video.ffmpeg_binaries()[0], capture_stdout=True, capture_stderr=True)
    )
    return path


@pytest.fixture(params=["ffprobe", "imageio"])
def probe_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with ffprobe from PATH, and again with only imageio-ffmpeg's bundled ffmpeg."""
    if request.param == "ffprobe" and shutil.which("ffprobe") is None:
        pytest.skip("ffprobe is not on PATH")
    if request.param == "imageio":
        monkeypatch.setattr(video, "ffmpeg_binaries", lambda: (imageio_ffmpeg.get_ffmpeg_exe(), None))
    return request.param


def test_ffmpeg_binaries_are_executables() -> None:
    ffmpeg_exe, ffprobe_exe = video.ffmpeg_binaries()
    assert Path(ffmpeg_exe).is_file()
    assert ffprobe_exe is None or Path(ffprobe_exe).is_file()


def test_probe_reports_size_rate_and_count(tiny_video: Path, probe_backend: str) -> None:
    expected_count = NUM_FRAMES if probe_backend == "ffprobe" else None
    info = probe_video(tiny_video)
    assert info == VideoInfo(width=WIDTH, height=HEIGHT, fps=25.0, num_frames=expected_count, duration=info.duration)
    assert info.duration == pytest.approx(NUM_FRAMES / 25.0, abs=0.05)


def test_decode_gives_rgb_frames_in_order(tiny_video: Path, probe_backend: str) -> None:
    frames = decode_frames(tiny_video)
    assert frames.shape == (NUM_FRAMES, HEIGHT, WIDTH, 3)
    assert frames.dtype == np.uint8
    mean_colours = frames.reshape(NUM_FRAMES, -1, 3).mean(axis=1)
    np.testing.assert_allclose(mean_colours, FRAME_COLOURS, atol=6)


def test_decode_resizes_and_limits_frames(tiny_video: Path) -> None:
    assert decode_frames(tiny_video, short_side=32).shape == (NUM_FRAMES, 32, 42, 3)
    assert decode_frames(tiny_video, short_side=32, max_frames=3).shape == (3, 32, 42, 3)


@pytest.mark.parametrize(
    ("width", "height", "short_side", "expected"),
    [
        (320, 240, 256, (342, 256)),
        (240, 320, 256, (256, 342)),
        (64, 48, None, (64, 48)),
        (101, 101, 50, (50, 50)),
        (320, 240, 255, (342, 256)),  # odd sizes round to even for yuv420p
        (257, 256, 256, (258, 256)),  # a tie rounds up, as ffmpeg's scale expression does
    ],
)
def test_scaled_size(width: int, height: int, short_side: int | None, expected: tuple[int, int]) -> None:
    assert scaled_size(width, height, short_side) == expected


def test_scaled_size_rejects_non_positive_short_side() -> None:
    with pytest.raises(ValueError):
        scaled_size(320, 240, 0)


def test_jpeg_round_trip_keeps_rgb_and_grey() -> None:
    rows, cols = np.mgrid[0:48, 0:64]
    rgb = np.stack([rows * 5, cols * 4, np.full_like(rows, 60)], axis=-1).astype(np.uint8)
    decoded = decode_jpeg(encode_jpeg(rgb, quality=95))
    assert decoded.shape == rgb.shape
    assert np.abs(decoded.astype(int) - rgb).mean() < 2

    grey = (rows * 5).astype(np.uint8)
    decoded_grey = decode_jpeg(np.frombuffer(encode_jpeg(grey), np.uint8))  # as stored in an array
    assert decoded_grey.shape == grey.shape
    assert np.abs(decoded_grey.astype(int) - grey).mean() < 2


def test_jpeg_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        decode_jpeg(b"this is not a jpeg")
    with pytest.raises(ValueError):
        decode_jpeg(b"\xff\xd8\xff" + bytes(100))
    with pytest.raises(ValueError):
        encode_jpeg(np.zeros((4, 4, 3), np.float32))


@pytest.mark.parametrize(
    "name",
    ["clip with spaces.avi", 'it\'s a "quoted" clip.avi', "vidéo_日本語.avi", "at 12:30.avi", "-leading-dash.avi"],
)
def test_odd_file_names_decode(tiny_video: Path, tmp_path: Path, name: str) -> None:
    odd_path = tmp_path / name
    shutil.copy(tiny_video, odd_path)
    assert probe_video(odd_path).num_frames in (NUM_FRAMES, None)
    assert decode_frames(odd_path, max_frames=2).shape == (2, HEIGHT, WIDTH, 3)


def _assert_bad_video(path: Path, reason: str) -> None:
    for read in (probe_video, decode_frames, lambda p: video_jpegs(p, 32, 90)):
        with pytest.raises(BadVideoError, match=reason) as error:
            read(path)
        assert error.value.path == path
        assert str(path) in str(error.value)


def test_missing_file_is_reported(tmp_path: Path, probe_backend: str) -> None:
    _assert_bad_video(tmp_path / "nowhere.avi", "not found")


def test_zero_byte_file_is_reported(tmp_path: Path, probe_backend: str) -> None:
    path = tmp_path / "empty.avi"
    path.touch()
    _assert_bad_video(path, "empty file")


def test_corrupt_file_is_reported(tmp_path: Path, probe_backend: str) -> None:
    path = tmp_path / "garbage.avi"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    _assert_bad_video(path, "corrupt: .*Invalid data")


def test_audio_only_file_is_reported(audio_only_file: Path, probe_backend: str) -> None:
    _assert_bad_video(audio_only_file, "no video stream")


def test_sampled_frames_are_the_decoded_frames_at_those_indices(tiny_video: Path) -> None:
    count, frames = sample_frames(tiny_video, lambda n: [0, n // 2, n - 1], short_side=32)
    decoded = decode_frames(tiny_video, short_side=32)
    assert count == len(decoded) == NUM_FRAMES
    assert sorted(frames) == [0, NUM_FRAMES // 2, NUM_FRAMES - 1]
    for index, frame in frames.items():
        np.testing.assert_array_equal(frame, decoded[index])


def _encode_ffv1(path: Path, frames: np.ndarray) -> Path:
    """Write ``(T, H, W, 3)`` RGB frames losslessly (FFV1, 4:4:4 in Matroska), any size, odd ones too."""
    _, height, width, _ = frames.shape
    subprocess.run([video.ffmpeg_binaries()[0], "-nostdin", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
                    "-s", f"{width}x{height}", "-r", "25", "-i", "-", "-c:v", "ffv1", "-pix_fmt", "yuv444p", str(path)],
                   input=frames.tobytes(), check=True)
    return path


def test_video_jpegs_are_the_decoded_frames(tiny_video: Path, probe_backend: str) -> None:
    jpegs, height, width = video_jpegs(tiny_video, 32, 90, limits=PreprocessConfig())
    decoded = decode_frames(tiny_video, short_side=32)
    assert (len(jpegs), height, width) == decoded.shape[:3] == (NUM_FRAMES, 32, 42)
    images = np.stack([decode_jpeg(jpeg) for jpeg in jpegs])
    assert np.abs(images.astype(int) - decoded).mean() < 2  # full-range YUV, no colour shift
    np.testing.assert_allclose(images.reshape(NUM_FRAMES, -1, 3).mean(axis=1), FRAME_COLOURS, atol=6)


def test_video_jpegs_honour_the_quality_as_well_as_encode_jpeg(gradient_video: Path) -> None:
    """Each quality gives JPEGs as close to the decoded RGB frames as ``encode_jpeg`` of those frames (OpenCV)."""
    decoded = decode_frames(gradient_video)
    errors, sizes = {}, {}
    for quality in (30, 95):
        jpegs, _, _ = video_jpegs(gradient_video, None, quality)
        ours = np.abs(np.stack([decode_jpeg(j) for j in jpegs]).astype(int) - decoded).mean()
        opencv = np.abs(np.stack([decode_jpeg(encode_jpeg(f, quality)) for f in decoded]).astype(int) - decoded).mean()
        assert ours < 1.1 * opencv, (quality, ours, opencv)
        errors[quality], sizes[quality] = ours, sum(map(len, jpegs))
    assert errors[95] < errors[30] and sizes[95] > 2 * sizes[30]


@pytest.fixture(scope="module")
def gradient_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three 64x48 frames of smooth gradients and noise (JPEG quality shows in their size)."""
    rows, cols = np.mgrid[0:HEIGHT, 0:WIDTH]
    noise = np.random.default_rng(0).integers(0, 40, (3, HEIGHT, WIDTH, 3))
    frames = np.stack([rows * 4, cols * 3, (rows + cols) * 2], axis=-1)[None] + noise
    return _encode_ffv1(tmp_path_factory.mktemp("gradient") / "gradient.mkv", frames.clip(0, 255).astype(np.uint8))


@pytest.mark.parametrize(("width", "height"), [(65, 49), (257, 256), (75, 101), (3, 5)])
@pytest.mark.parametrize("short_side", [None, 256, 33])
def test_video_jpegs_size_is_scaled_size(tmp_path: Path, width: int, height: int, short_side: int | None) -> None:
    """ffmpeg's scale expression and ``scaled_size`` agree on odd sizes, ties and portrait frames."""
    frames = np.zeros((2, height, width, 3), np.uint8)
    frames[:, : height // 2] = (200, 30, 30)
    path = _encode_ffv1(tmp_path / "odd.mkv", frames)
    jpegs, out_height, out_width = video_jpegs(path, short_side, 90)
    assert (out_width, out_height) == scaled_size(width, height, short_side)
    assert decode_jpeg(jpegs[0]).shape == decode_frames(path, short_side).shape[1:] == (out_height, out_width, 3)


@pytest.mark.parametrize(
    ("limit", "reason"),
    [
        ({"max_video_frames": 5}, "10 frames exceed preprocess.max_video_frames=5"),
        ({"max_video_seconds": 0.2}, "0 s exceeds preprocess.max_video_seconds=0.2"),
        ({"max_frame_pixels": 3000}, r"frames of 64x48 \(3072 pixels\) exceed preprocess.max_frame_pixels=3000"),
    ],
)
def test_video_jpegs_refuse_videos_over_the_limits(tiny_video: Path, probe_backend: str, limit: dict, reason: str) -> None:
    with pytest.raises(BadVideoError, match=reason):
        video_jpegs(tiny_video, 32, 90, limits=PreprocessConfig(**limit))


def test_playlist_is_never_decoded(tiny_video: Path, tmp_path: Path) -> None:
    """ffmpeg refuses to open an HLS playlist of a good video (demuxer whitelist); the probe then names it."""
    shutil.copy(tiny_video, tmp_path / "segment.avi")
    playlist = tmp_path / "playlist.avi"
    playlist.write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\nsegment.avi\n#EXT-X-ENDLIST\n")
    run = subprocess.run(video._rawvideo_command(playlist, WIDTH, HEIGHT, None), capture_output=True)
    assert run.returncode != 0 and run.stdout == b""
    assert b"not on whitelist" in run.stderr
    with pytest.raises(BadVideoError, match="a hls playlist, not a media file"):
        video_jpegs(playlist, None, 90)
