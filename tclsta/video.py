"""Video decoding through ffmpeg and JPEG coding of frames.

Frames come out as ``(T, H, W, 3)`` uint8 RGB (:func:`decode_frames`,
:func:`sample_frames`) or straight as JPEGs (:func:`video_jpegs`, one ffmpeg
process per video and no colour conversion), resized by ffmpeg's ``scale``
filter so that no Python-side resampling is needed. Every failure a user can
cause (missing, empty, corrupt or audio-only file, a header ffmpeg cannot make
sense of, a playlist or other indirection, a video over the size limits) raises
``BadVideoError`` naming the file.

Inputs are local media files only: ffmpeg and ffprobe may open nothing but files
(``-protocol_whitelist file``), and playlist demuxers (HLS, concat, DASH, ...) are refused
(left out of ffmpeg's ``-format_whitelist``; ffprobe's format name is checked).
"""

from __future__ import annotations

import functools
import math
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable, Iterable, Iterator, NoReturn

import cv2
import ffmpeg
import imageio_ffmpeg
import numpy as np
import simplejpeg

from tclsta.errors import BadVideoError

if TYPE_CHECKING:
    from tclsta.config import PreprocessConfig

# ffmpeg's closing lines that say nothing about the cause.
_UNINFORMATIVE_STDERR = ("Conversion failed!", "Exiting normally")
_STREAM_LINE = re.compile(r"Stream #\d+:\d+")
_VIDEO_STREAM_LINE = re.compile(r"Stream #\d+:\d+.*: Video:")
_JPEG_MAGIC = b"\xff\xd8\xff"
# An error line of a log written with -loglevel level+info, and a rotate tag of the input's metadata in it.
_ERROR_LINE = re.compile(r"\[(?:error|fatal|panic)\] (.*)")
_ROTATE_TAG = re.compile(r"^\[info\]\s+rotate\s*:\s*(.*?)\s*$", re.MULTILINE)
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


def _rotation(value: object) -> int:
    """Degrees of a rotate tag or side data; ``ValueError`` for one that is not a finite number (``abc``, ``inf``)."""
    degrees = float(value)  # type: ignore[arg-type]
    if not math.isfinite(degrees):
        raise ValueError(f"rotate tag {value!r} is not a finite number")
    return int(degrees)


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
    rotation = _rotation(stream.get("tags", {}).get("rotate", 0))
    for side_data in stream.get("side_data_list", []):
        rotation = _rotation(side_data.get("rotation", rotation))
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


def _nearest_even(numerator: int, denominator: int) -> int:
    """The even number nearest ``numerator / denominator`` (ties up), at least 2, in integer arithmetic."""
    return max(2, 2 * ((numerator + denominator) // (2 * denominator)))


def scaled_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """Output (w, h) with the short side = short_side, aspect kept, both even; None keeps the size."""
    if short_side is None:
        return width, height
    if short_side <= 0:
        raise ValueError(f"short_side must be positive, got {short_side}")
    short = _nearest_even(short_side, 1)
    if width <= height:
        return short, _nearest_even(height * short, width)
    return _nearest_even(width * short, height), short


def _scale_filter(short_side: int | None) -> str:
    """ffmpeg's scale filter to ``scaled_size(iw, ih, short_side)`` (the same arithmetic), followed by a comma.

    ffmpeg evaluates the size itself on the displayed (auto-rotated) frame, so no probe is needed.
    """
    if short_side is None:
        return ""
    short, _ = scaled_size(1, 1, short_side)
    long_side = "max(2,2*floor(({long}*{short}+{small})/(2*{small})))"
    width = f"if(lte(iw,ih),{short},{long_side.format(long='iw', short=short, small='ih')})"
    height = f"if(lte(iw,ih),{long_side.format(long='ih', short=short, small='iw')},{short})"
    return f"scale=w='{width}':h='{height}',"


@functools.cache
def _media_demuxers(ffmpeg_exe: str) -> str:
    """``-format_whitelist`` for ``ffmpeg_exe``: every demuxer it has but the indirect ones (playlists)."""
    listing = subprocess.run([ffmpeg_exe, "-hide_banner", "-demuxers"], capture_output=True, text=True, check=True)
    lines = listing.stdout.splitlines()
    table = next(i for i, line in enumerate(lines) if line.strip() and set(line.strip()) == {"-"}) + 1
    names = [line.split()[1] for line in lines[table:] if len(line.split()) > 1]
    return ",".join(name for name in names if not set(name.split(",")) & _INDIRECT_FORMATS)


@functools.cache
def _every_frame_once(ffmpeg_exe: str) -> list[str]:
    """Output options that pass each decoded frame on once, as decoded.

    Raw and YUV4MPEG2 outputs otherwise get ffmpeg's constant-rate mode, which
    repeats or drops frames wherever the timestamps have gaps (variable-rate
    phone videos, AVI files with empty packets). ``-fps_mode`` is ffmpeg 5.1 and
    later; older ones call it ``-vsync``, which newer ones no longer know.
    """
    options = subprocess.run([ffmpeg_exe, "-hide_banner", "-h", "long"], capture_output=True, text=True).stdout
    return ["-fps_mode" if "-fps_mode" in options else "-vsync", "passthrough"]


def _decode_command(path: Path, video_filter: str, output: list[str], max_frames: int | None,
                    limits: PreprocessConfig | None, one_thread: bool = False) -> list[str]:
    """The ffmpeg command decoding ``path`` through ``video_filter`` to ``output`` on stdout.

    It opens local files only, refuses playlists (a demuxer whitelist) and, with
    ``limits``, frames over ``max_frame_pixels`` before decoding them. Its log is
    at level info with level tags (``[error] ...``), which :func:`_last_error` reads.
    Every decoded frame comes out once (:func:`_every_frame_once`).
    ``one_thread``: decode and filter on one thread (else ffmpeg's default, one per core).
    """
    ffmpeg_exe, _ = ffmpeg_binaries()
    command = [ffmpeg_exe, "-nostdin", "-hide_banner", "-nostats", "-loglevel", "level+info",
               "-protocol_whitelist", "file", "-format_whitelist", _media_demuxers(ffmpeg_exe)]
    if one_thread:
        command += ["-threads", "1", "-filter_threads", "1"]
    if limits is not None:
        command += ["-max_pixels", str(limits.max_frame_pixels)]
    command += ["-i", _ffmpeg_url(path), "-an", "-vf", video_filter, *_every_frame_once(ffmpeg_exe)]
    if max_frames is not None:
        command += ["-frames:v", str(max_frames)]
    return command + output + ["pipe:"]


def _rawvideo_command(path: Path, width: int, height: int, max_frames: int | None,
                      limits: PreprocessConfig | None = None) -> list[str]:
    """ffmpeg piping frames scaled to ``width`` x ``height`` as rawvideo rgb24 (byte count per frame known)."""
    return _decode_command(path, f"scale={width}:{height}", ["-f", "rawvideo", "-pix_fmt", "rgb24"], max_frames, limits)


def _last_error(log: bytes | str) -> str:
    """The last meaningful error line of a log written with ``-loglevel level+info``."""
    text = log.decode("utf-8", errors="replace") if isinstance(log, bytes) else log
    return last_stderr_line("\n".join(_ERROR_LINE.findall(text)))


class _FfmpegPipe:
    """An ffmpeg process writing to ``stdout``; its log goes to a file, so a chatty ffmpeg never blocks on it."""

    def __init__(self, command: list[str]):
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log)
        self.stdout = self.process.stdout

    def close(self) -> tuple[int, str]:
        """Stop reading and wait for ffmpeg (which ends early if it was still writing); its exit status and log."""
        self.stdout.close()
        status = self.process.wait()
        self._log.seek(0)
        log = self._log.read().decode("utf-8", errors="replace")
        self._log.close()
        return status, log


def _checked_probe(path: Path, limits: PreprocessConfig | None) -> VideoInfo:
    info = probe_video(path)
    if limits is not None:
        check_video_limits(path, info, limits)
    return info


def _refuse(path: Path, limits: PreprocessConfig | None, reason: str) -> NoReturn:
    """Raise the ``BadVideoError`` of a video that failed: the header probe's when it names the cause, else ``reason``.

    The probe runs only here, after a failure, so the success path costs one ffmpeg process.
    """
    _checked_probe(path, limits)
    raise BadVideoError(path, reason)


def _check_decoded_count(path: Path, count: int, limits: PreprocessConfig | None) -> None:
    """Refuse a video that decoded to more frames than the limit (its header understated them)."""
    if reason := _over_limits(count, 0.0, limits):  # no rate: the frame count alone
        raise BadVideoError(path, reason)


def decode_frames(path: Path, short_side: int | None = None, max_frames: int | None = None,
                  limits: PreprocessConfig | None = None) -> np.ndarray:
    """All frames (or the first ``max_frames``) as ``(T, H, W, 3)`` uint8 RGB.

    Frames are resized by ffmpeg's scale filter to ``scaled_size(..., short_side)``
    and piped as rawvideo rgb24. With ``limits``, a video over them is refused from
    its header before decoding, and decoding stops one frame past the frame limit.
    Raises ``BadVideoError`` (with ffmpeg's last meaningful error line) when
    decoding fails or yields no frames.
    """
    path = Path(path)
    info = _checked_probe(path, limits)
    width, height = scaled_size(info.width, info.height, short_side)
    if limits is not None:
        max_frames = min(max_frames or limits.max_video_frames + 1, limits.max_video_frames + 1)
    run = subprocess.run(_rawvideo_command(path, width, height, max_frames, limits), stdin=subprocess.DEVNULL,
                         capture_output=True)
    if run.returncode != 0:
        raise BadVideoError(path, f"ffmpeg failed: {_last_error(run.stderr)}")
    raw, frame_bytes = run.stdout, width * height * 3
    if len(raw) == 0:
        raise BadVideoError(path, f"ffmpeg decoded 0 frames ({_last_error(run.stderr)})")
    if len(raw) % frame_bytes != 0:
        raise BadVideoError(path, f"ffmpeg output of {len(raw)} bytes is not a whole number of {width}x{height} frames")
    _check_decoded_count(path, len(raw) // frame_bytes, limits)
    return np.frombuffer(raw, dtype=np.uint8).reshape(-1, height, width, 3)


def _streamed_frames(path: Path, width: int, height: int, max_frames: int | None,
                     limits: PreprocessConfig | None) -> Iterator[np.ndarray]:
    """Decoded frames ``(height, width, 3)`` one at a time, never the whole video in memory; with ``limits``,
    frames over ``max_frame_pixels`` are refused by ffmpeg before it decodes them, as in extraction."""
    frame_bytes = width * height * 3
    pipe = _FfmpegPipe(_rawvideo_command(path, width, height, max_frames, limits))
    try:
        while len(chunk := pipe.stdout.read(frame_bytes)) == frame_bytes:
            yield np.frombuffer(chunk, dtype=np.uint8).reshape(height, width, 3)
    finally:
        status, log = pipe.close()
    if status != 0:
        raise BadVideoError(path, f"ffmpeg failed: {_last_error(log)}")


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
    count = sum(1 for _ in _streamed_frames(path, 2, 2, cap, limits))
    _check_decoded_count(path, count, limits)
    if count == 0:
        raise BadVideoError(path, "ffmpeg decoded 0 frames")
    wanted = set(choose(count))
    width, height = scaled_size(info.width, info.height, short_side)
    kept = {i: frame.copy() for i, frame in enumerate(_streamed_frames(path, width, height, max(wanted) + 1, limits))
            if i in wanted}
    return count, kept


@dataclass(frozen=True)
class _Y4mStream:
    """The frames of a YUV4MPEG2 stream in 4:2:0 (ffmpeg's ``-f yuv4mpegpipe``), after its header line."""

    width: int
    height: int
    fps: float  # 0 when the header gives no rate

    @classmethod
    def from_header(cls, line: bytes) -> _Y4mStream:
        """The stream a header line (``YUV4MPEG2 W342 H256 F25:1 ... C420jpeg ...``) describes."""
        tag, *fields = line.split()
        params = {field[:1]: field[1:].decode() for field in fields}
        if tag != b"YUV4MPEG2" or not params.get(b"C", "420").startswith("420"):
            raise ValueError(f"not a YUV4MPEG2 4:2:0 header: {line[:80]!r}")
        numerator, _, denominator = params.get(b"F", "0:0").partition(":")
        fps = int(numerator) / int(denominator) if int(denominator or 0) else 0.0
        return cls(int(params[b"W"]), int(params[b"H"]), fps)

    def frames(self, stream: BinaryIO) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(Y, U, V) planes of each whole frame until the stream ends, views of one buffer per frame."""
        luma = self.width * self.height
        chroma_shape = ((self.height + 1) // 2, (self.width + 1) // 2)
        chroma = chroma_shape[0] * chroma_shape[1]
        while stream.readline().startswith(b"FRAME") and len(data := stream.read(luma + 2 * chroma)) == luma + 2 * chroma:
            yield (np.frombuffer(data, np.uint8, luma).reshape(self.height, self.width),
                   np.frombuffer(data, np.uint8, chroma, luma).reshape(chroma_shape),
                   np.frombuffer(data, np.uint8, chroma, luma + chroma).reshape(chroma_shape))


def _over_limits(count: int, fps: float, limits: PreprocessConfig | None) -> str | None:
    """Why ``count`` frames decoded at ``fps`` exceed ``limits`` (None when they do not)."""
    if limits is None:
        return None
    if count > limits.max_video_frames:
        return f"more than preprocess.max_video_frames={limits.max_video_frames} frames"
    if fps > 0 and count / fps > limits.max_video_seconds:
        return f"more than preprocess.max_video_seconds={limits.max_video_seconds:g} s of frames at {fps:g} frames/s"
    return None


def _unreadable_rotate_tag(log: str) -> str | None:
    """A ``rotate`` tag of the input that is no finite number, as ffmpeg's log prints its metadata (None when all are);
    the probe (:func:`_rotation`) refuses the same tags."""
    for value in _ROTATE_TAG.findall(log):
        try:
            _rotation(value)
        except ValueError:
            return value
    return None


def video_jpegs(path: Path, short_side: int | None, quality: int,
                limits: PreprocessConfig | None = None) -> tuple[list[bytes], int, int]:
    """(one JPEG per frame, height, width) of a video, at ``scaled_size(..., short_side)`` (``limits`` checked).

    One ffmpeg process, no probe: ffmpeg computes the size, converts to full-range
    YUV 4:2:0 (what JPEG stores) and streams YUV4MPEG2; libjpeg-turbo (simplejpeg)
    compresses the planes as they are, without a colour conversion. Frame limits
    are enforced while reading (``-max_pixels``, the count, count / rate); only a
    video that fails is probed, for the reason :func:`decode_frames` would give.
    ffmpeg runs on one thread: callers extract several videos at once instead
    (``extract_shard``'s ``workers``), which costs less CPU time than threads within one.
    """
    path = Path(path)
    _check_file(path)
    max_frames = None if limits is None else limits.max_video_frames + 1
    command = _decode_command(path, f"{_scale_filter(short_side)}format=yuvj420p", ["-f", "yuv4mpegpipe"], max_frames, limits,
                              one_thread=True)
    pipe = _FfmpegPipe(command)
    jpegs: list[bytes] = []
    over = None
    try:
        header = pipe.stdout.readline()
        stream = _Y4mStream.from_header(header) if header else _Y4mStream(0, 0, 0.0)
        for planes in stream.frames(pipe.stdout):
            jpegs.append(simplejpeg.encode_jpeg_yuv_planes(*planes, quality=int(quality)))
            if over := _over_limits(len(jpegs), stream.fps, limits):
                break
    finally:
        status, log = pipe.close()
    if over:
        _refuse(path, limits, over)
    if status != 0:
        _refuse(path, limits, f"ffmpeg failed: {_last_error(log)}")
    if not jpegs:
        _refuse(path, limits, f"ffmpeg decoded 0 frames ({_last_error(log)})")
    if (rotate := _unreadable_rotate_tag(log)) is not None:
        _refuse(path, limits, f"unreadable header: rotate tag {rotate!r}")
    return jpegs, stream.height, stream.width


def encode_jpeg(image: np.ndarray, quality: int = 90) -> bytes:
    """JPEG bytes (libjpeg-turbo through OpenCV, which releases the GIL) of an RGB ``(H, W, 3)`` or grey ``(H, W)`` uint8 image."""
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"expected uint8 (H, W) or (H, W, 3), got {image.dtype} {image.shape}")
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    ok, buffer = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV could not encode the image as JPEG")
    return buffer.tobytes()


def decode_jpeg(data: bytes | np.ndarray) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8 image from JPEG bytes, or grey ``(H, W)`` for a single-channel JPEG."""
    buffer = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else np.asarray(data, np.uint8).ravel()
    if buffer[: len(_JPEG_MAGIC)].tobytes() != _JPEG_MAGIC:
        raise ValueError("not JPEG data (missing the JPEG start-of-image marker)")
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError("corrupt JPEG data")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if image.ndim == 3 else image
