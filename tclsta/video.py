"""Video decoding through ffmpeg (ffmpeg-python) and JPEG coding of single frames.

Frames come out as ``(T, H, W, 3)`` uint8 RGB, resized by ffmpeg's ``scale``
filter so that no Python-side resampling is needed. Every failure a user can
cause (missing, empty, corrupt or audio-only file, a header ffmpeg cannot make
sense of, a playlist or other indirection, a video over the size limits) raises
``BadVideoError`` naming the file.

Inputs are local media files only: ffmpeg and ffprobe may open nothing but files
(``-protocol_whitelist file``), and playlist demuxers (HLS, concat, DASH, ...) are refused.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import cv2
import ffmpeg
import imageio_ffmpeg
import numpy as np

from tclsta.errors import BadVideoError

if TYPE_CHECKING:
    from tclsta.config import PreprocessConfig

# ffmpeg's closing lines that say nothing about the cause.
_UNINFORMATIVE_STDERR = ("Conversion failed!", "Exiting normally")
_STREAM_LINE = re.compile(r"Stream #\d+:\d+")
_VIDEO_STREAM_LINE = re.compile(r"Stream #\d+:\d+.*: Video:")
_JPEG_MAGIC = b"\xff\xd8\xff"
# ffmpeg may read local files only: no network, pipes or data: URLs, also not from inside a media file.
_INPUT_OPTIONS = {"protocol_whitelist": "file"}
# Demuxers that read other files or URLs named inside the input (playlists, manifests): never media.
_INDIRECT_FORMATS = {"hls", "applehttp", "concat", "dash", "imf", "sdp", "rtsp", "rtp", "tee"}


@dataclass(frozen=True)
class VideoInfo:
    """A video stream's frame size (as displayed, rotation applied), frame rate and length."""

    width: int
    height: int
    fps: float
    num_frames: int | None  # from the container when known
    duration: float | None = None  # seconds, from the container when known

    @property
    def estimated_frames(self) -> int | None:
        """The container's frame count, else duration x rate, else None."""
        if self.num_frames is not None:
            return self.num_frames
        return round(self.duration * self.fps) if self.duration and self.fps else None


def check_video_limits(path: Path, info: VideoInfo, limits: PreprocessConfig) -> None:
    """Refuse, from the header alone, a video whose frames, frame count or duration exceed the limits."""
    pixels = info.width * info.height
    if pixels > limits.max_frame_pixels:
        raise BadVideoError(path, f"frames of {info.width}x{info.height} ({pixels} pixels) exceed "
                                  f"preprocess.max_frame_pixels={limits.max_frame_pixels}")
    frames = info.estimated_frames
    if frames is not None and frames > limits.max_video_frames:
        raise BadVideoError(path, f"{frames} frames exceed preprocess.max_video_frames={limits.max_video_frames}")
    if info.duration is not None and info.duration > limits.max_video_seconds:
        raise BadVideoError(path, f"{info.duration:.0f} s exceeds preprocess.max_video_seconds={limits.max_video_seconds:g}")


def ffmpeg_binaries() -> tuple[str, str | None]:
    """(ffmpeg, ffprobe) executables from PATH when present.

    Without them, ffmpeg comes from the imageio-ffmpeg package and ffprobe is None.
    """
    ffmpeg_exe = shutil.which("ffmpeg") or imageio_ffmpeg.get_ffmpeg_exe()
    return ffmpeg_exe, shutil.which("ffprobe")


def _ffmpeg_url(path: Path) -> str:
    """The ``file:`` URL of ``path``, so that names with ':' are not read as a protocol."""
    return f"file:{path}"


def last_stderr_line(stderr: bytes | str | None) -> str:
    """The last line of ffmpeg's stderr that explains a failure."""
    text = stderr.decode("utf-8", errors="replace") if isinstance(stderr, bytes) else stderr or ""
    lines = [line.strip() for line in text.splitlines()]
    meaningful = [line for line in lines if line and not line.startswith(_UNINFORMATIVE_STDERR)]
    return meaningful[-1] if meaningful else "ffmpeg failed without a message"


def _check_file(path: Path) -> None:
    """Raise ``BadVideoError`` for a missing, non-regular or zero-byte file."""
    if not path.exists():
        raise BadVideoError(path, "file not found")
    if not path.is_file():
        raise BadVideoError(path, "not a regular file")
    if path.stat().st_size == 0:
        raise BadVideoError(path, "empty file (0 bytes)")


def _probe_with_ffprobe(path: Path, ffprobe_exe: str) -> VideoInfo:
    try:
        probe = ffmpeg.probe(_ffmpeg_url(path), cmd=ffprobe_exe, **_INPUT_OPTIONS)
    except ffmpeg.Error as error:
        raise BadVideoError(path, f"unreadable or corrupt: {last_stderr_line(error.stderr)}") from None
    container = probe.get("format", {})
    demuxers = set(str(container.get("format_name", "")).split(","))
    if demuxers & _INDIRECT_FORMATS:
        raise BadVideoError(path, f"a {container['format_name']} playlist, not a media file")
    try:
        return _video_info(path, probe)
    except (ValueError, TypeError, KeyError, ZeroDivisionError) as error:  # odd header values, e.g. rotate=abc
        raise BadVideoError(path, f"unreadable header: {type(error).__name__}: {error}") from None


def _video_info(path: Path, probe: dict) -> VideoInfo:
    """VideoInfo of ffprobe's output (``-show_format -show_streams``)."""
    video_streams = [stream for stream in probe.get("streams", []) if stream.get("codec_type") == "video"]
    if not video_streams:
        raise BadVideoError(path, "no video stream (audio-only or data file)")
    stream = video_streams[0]
    width, height = int(stream.get("width") or 0), int(stream.get("height") or 0)
    if width <= 0 or height <= 0:
        raise BadVideoError(path, "video stream has no frame size")
    # ffmpeg auto-rotates on decoding, so report the displayed size.
    rotation = int(float(stream.get("tags", {}).get("rotate", 0)))
    for side_data in stream.get("side_data_list", []):
        rotation = int(float(side_data.get("rotation", rotation)))
    if rotation % 180 != 0:
        width, height = height, width
    fps = 0.0
    for rate_key in ("avg_frame_rate", "r_frame_rate"):
        numerator, _, denominator = stream.get(rate_key, "0/0").partition("/")
        if int(denominator or 1) != 0 and int(numerator) > 0:
            fps = float(Fraction(int(numerator), int(denominator or 1)))
            break
    nb_frames = int(stream.get("nb_frames") or 0)
    duration = float(stream.get("duration") or probe.get("format", {}).get("duration") or 0)
    return VideoInfo(width=width, height=height, fps=fps, num_frames=nb_frames or None, duration=duration or None)


def _probe_with_imageio(path: Path) -> VideoInfo:
    options = [arg for name, value in _INPUT_OPTIONS.items() for arg in (f"-{name}", value)]
    frames = imageio_ffmpeg.read_frames(_ffmpeg_url(path), input_params=options)
    try:
        metadata = next(frames)
    except (OSError, RuntimeError) as error:
        stderr = str(error)
        if _STREAM_LINE.search(stderr) and not _VIDEO_STREAM_LINE.search(stderr):
            raise BadVideoError(path, "no video stream (audio-only or data file)") from None
        raise BadVideoError(path, f"unreadable or corrupt: {last_stderr_line(stderr)}") from None
    finally:
        frames.close()
    width, height = metadata["size"]  # already rotated as ffmpeg will decode it
    duration = float(metadata.get("duration") or 0.0)
    return VideoInfo(width=int(width), height=int(height), fps=float(metadata.get("fps") or 0.0), num_frames=None,
                     duration=duration or None)


def probe_video(path: Path) -> VideoInfo:
    """Frame size, rate and (when the container says) frame count of the first video stream.

    Uses ffprobe when it is on PATH, else the header that imageio-ffmpeg's bundled
    ffmpeg prints (``num_frames`` is then None). Raises ``BadVideoError`` naming
    the file when it is missing, empty, unreadable or has no video stream.
    """
    path = Path(path)
    _check_file(path)
    _, ffprobe_exe = ffmpeg_binaries()
    if ffprobe_exe is not None:
        return _probe_with_ffprobe(path, ffprobe_exe)
    return _probe_with_imageio(path)


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))


def scaled_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """Output (w, h) with the short side = short_side, aspect kept, both even; None keeps the size."""
    if short_side is None:
        return width, height
    if short_side <= 0:
        raise ValueError(f"short_side must be positive, got {short_side}")
    short = _even(short_side)
    if width <= height:
        return short, _even(height * short / width)
    return _even(width * short / height), short


def _decoder(path: Path, width: int, height: int, max_frames: int | None, pixel_format: str = "rgb24"):
    """The ffmpeg command piping frames scaled to ``width`` x ``height`` as rawvideo (rgb24, or bgr24)."""
    output_args = {"format": "rawvideo", "pix_fmt": pixel_format}
    if max_frames is not None:
        output_args["frames:v"] = max_frames
    # Always scale to an explicit size: the byte count per frame is then known for certain.
    return (
        ffmpeg.input(_ffmpeg_url(path), **_INPUT_OPTIONS)
        .filter("scale", width, height)
        .output("pipe:", **output_args)
        .global_args("-nostdin", "-hide_banner", "-loglevel", "error")
    )


def _checked_probe(path: Path, limits: PreprocessConfig | None) -> VideoInfo:
    info = probe_video(path)
    if limits is not None:
        check_video_limits(path, info, limits)
    return info


def _check_decoded_count(path: Path, count: int, limits: PreprocessConfig | None) -> None:
    """Refuse a video that decoded to more frames than the limit (its header understated them)."""
    if limits is not None and count > limits.max_video_frames:
        raise BadVideoError(path, f"more than preprocess.max_video_frames={limits.max_video_frames} frames")


def decode_frames(path: Path, short_side: int | None = None, max_frames: int | None = None,
                  limits: PreprocessConfig | None = None, pixel_format: str = "rgb24") -> np.ndarray:
    """All frames (or the first ``max_frames``) as ``(T, H, W, 3)`` uint8 RGB (``pixel_format="bgr24"``: BGR).

    Frames are resized by ffmpeg's scale filter to ``scaled_size(..., short_side)``
    and piped as rawvideo rgb24. With ``limits``, a video over them is refused from
    its header before decoding, and decoding stops one frame past the frame limit.
    Raises ``BadVideoError`` (with ffmpeg's last meaningful stderr line) when
    decoding fails or yields no frames.
    """
    path = Path(path)
    info = _checked_probe(path, limits)
    width, height = scaled_size(info.width, info.height, short_side)
    if limits is not None:
        max_frames = min(max_frames or limits.max_video_frames + 1, limits.max_video_frames + 1)
    stream = _decoder(path, width, height, max_frames, pixel_format)
    ffmpeg_exe, _ = ffmpeg_binaries()
    try:
        raw, stderr = stream.run(cmd=ffmpeg_exe, capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as error:
        raise BadVideoError(path, f"ffmpeg failed: {last_stderr_line(error.stderr)}") from None
    frame_bytes = width * height * 3
    if len(raw) == 0:
        reason = last_stderr_line(stderr) if stderr.strip() else "no error message"
        raise BadVideoError(path, f"ffmpeg decoded 0 frames ({reason})")
    if len(raw) % frame_bytes != 0:
        raise BadVideoError(path, f"ffmpeg output of {len(raw)} bytes is not a whole number of {width}x{height} frames")
    _check_decoded_count(path, len(raw) // frame_bytes, limits)
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, height, width, 3)


def _streamed_frames(path: Path, width: int, height: int, max_frames: int | None) -> Iterator[np.ndarray]:
    """Decoded frames ``(height, width, 3)`` one at a time, never the whole video in memory."""
    ffmpeg_exe, _ = ffmpeg_binaries()
    frame_bytes = width * height * 3
    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: a chatty ffmpeg never blocks on it
        process = subprocess.Popen(_decoder(path, width, height, max_frames).compile(cmd=ffmpeg_exe),
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
        try:
            while len(chunk := process.stdout.read(frame_bytes)) == frame_bytes:
                yield np.frombuffer(chunk, dtype=np.uint8).reshape(height, width, 3)
        finally:
            process.stdout.close()
            status = process.wait()
        if status != 0:
            stderr.seek(0)
            raise BadVideoError(path, f"ffmpeg failed: {last_stderr_line(stderr.read())}")


def sample_frames(path: Path, choose: Callable[[int], Iterable[int]], short_side: int | None = None,
                  limits: PreprocessConfig | None = None) -> tuple[int, dict[int, np.ndarray]]:
    """The video's frame count T and only the frames ``choose(T)`` picks, ``{index: (H, W, 3) uint8 RGB}``.

    Two passes of ffmpeg: the first counts the frames (decoded at 2x2 pixels, as
    :func:`decode_frames` would count them), the second keeps the chosen ones, so
    memory holds the chosen frames, never the whole video.
    """
    path = Path(path)
    info = _checked_probe(path, limits)
    cap = None if limits is None else limits.max_video_frames + 1
    count = sum(1 for _ in _streamed_frames(path, 2, 2, cap))
    _check_decoded_count(path, count, limits)
    if count == 0:
        raise BadVideoError(path, "ffmpeg decoded 0 frames")
    wanted = set(choose(count))
    width, height = scaled_size(info.width, info.height, short_side)
    kept = {i: frame.copy() for i, frame in enumerate(_streamed_frames(path, width, height, max(wanted) + 1)) if i in wanted}
    return count, kept


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes of an RGB ``(H, W, 3)`` or grey ``(H, W)`` uint8 image."""
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"expected uint8 (H, W) or (H, W, 3), got {image.dtype} {image.shape}")
    return _encode_bgr_jpeg(cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image, quality)


def _encode_bgr_jpeg(image: np.ndarray, quality: int) -> bytes:
    """JPEG bytes (libjpeg-turbo through OpenCV, which releases the GIL) of a BGR or grey image."""
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV could not encode the image as JPEG")
    return buffer.tobytes()


def video_jpegs(path: Path, short_side: int | None, quality: int,
                limits: PreprocessConfig | None = None) -> tuple[list[bytes], int, int]:
    """(one JPEG per frame, height, width) of a video, decoded as by ``decode_frames`` (``limits`` checked).

    ffmpeg hands over BGR pixels, so the JPEGs are those ``encode_jpeg`` makes of the
    RGB frames at ``quality``, without a colour conversion per frame.
    """
    frames = decode_frames(path, short_side, limits=limits, pixel_format="bgr24")  # (T, H, W, 3) BGR
    return [_encode_bgr_jpeg(frame, quality) for frame in frames], frames.shape[1], frames.shape[2]


def decode_jpeg(data: bytes | np.ndarray) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8 image from JPEG bytes, or grey ``(H, W)`` for a single-channel JPEG."""
    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else np.asarray(data, np.uint8).ravel()
    if buffer[: len(_JPEG_MAGIC)].tobytes() != _JPEG_MAGIC:
        raise ValueError("not JPEG data (missing the JPEG start-of-image marker)")
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError("corrupt JPEG data")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if image.ndim == 3 else image
