"""Helpers of the fault-injection tests: run stages, kill them part-way, compare shards."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import ffmpeg

from tclsta.data.shards import ShardReader
from tclsta.video import ffmpeg_binaries

VENV_ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}


def stage_command(stage: str, settings: dict, *args: str | Path) -> list[str]:
    """``python -m tclsta <stage> --settings JSON args...``, as the workflow calls it."""
    return [sys.executable, "-m", "tclsta", stage, "--settings", json.dumps(settings), *map(str, args)]


def run_stage(stage: str, settings: dict, *args: str | Path, **popen) -> subprocess.CompletedProcess:
    return subprocess.run(stage_command(stage, settings, *args), capture_output=True, text=True, timeout=300, **popen)


def kill_midway(command: list[str], cwd: Path, started: Callable[[], bool], delay: float) -> int:
    """Run ``command`` in its own process group; once ``started()`` holds, wait ``delay``
    seconds and SIGKILL the whole group (workers included). Returns the exit status."""
    process = subprocess.Popen(command, cwd=cwd, env=VENV_ENV, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while not started() and process.poll() is None:
        time.sleep(0.002)
    time.sleep(delay)
    os.killpg(process.pid, signal.SIGKILL)
    return process.wait(timeout=60)


def temp_files(folder: Path) -> list[Path]:
    """The hidden ``.<name>.*.tmp.<ext>`` files of atomic writes in progress (or killed)."""
    return sorted(folder.glob(".*.tmp*"))


def shard_contents(path: Path, ignore: tuple[str, ...] = ()) -> dict[str, dict]:
    """Everything a shard holds, video by video: metadata (less ``ignore``), frame and flow JPEG bytes, settings."""
    with ShardReader(path) as reader:
        contents = {}
        for video_id in reader.video_ids:
            record = {k: v for k, v in vars(reader.record(video_id)).items() if k not in ignore}
            frames = reader.frames(video_id) if reader.settings(video_id, "frames") is not None else None
            flow = reader.flow_jpegs(video_id) if reader.settings(video_id, "flow") is not None else None
            contents[video_id] = {
                "record": record,
                "frames": frames,
                "flow": None if flow is None else (flow, reader.flow_bound(video_id)),
                "settings": (reader.settings(video_id, "frames"), reader.settings(video_id, "flow")),
            }
    return contents


def reencode(source: Path, target: Path, frames: int) -> None:
    """Write the first ``frames`` frames of ``source`` to ``target`` with ffmpeg (MPEG-4 AVI)."""
    (
        ffmpeg.input(str(source))
        .output(str(target), vframes=frames, vcodec="mpeg4")
        .global_args("-loglevel", "error", "-y")
        .run(cmd=ffmpeg_binaries()[0], capture_stdout=True, capture_stderr=True)
    )


PEAK_RSS = (
    "import resource, subprocess, sys; run = subprocess.run(sys.argv[2:]); "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(run.returncode)"
)


def run_with_peak_rss(command: list[str], folder: Path) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``command``; return its result and the peak resident memory (MiB) of it or any process it started."""
    measured = folder / "peak_rss_kib"
    run = subprocess.run([sys.executable, "-c", PEAK_RSS, str(measured), *command], capture_output=True, text=True,
                         timeout=300, env=VENV_ENV)
    return run, int(measured.read_text()) / 1024


def lavfi_video(path: Path, size: str, rate: float, seconds: float, colour: str = "gray", **output_args) -> Path:
    """An MPEG-4 video of one flat colour from ffmpeg's ``color`` source: any length or size, made in seconds."""
    (
        ffmpeg.input(f"color=c={colour}:size={size}:rate={rate}:duration={seconds}", f="lavfi")
        .output(str(path), vcodec="mpeg4", **output_args)
        .global_args("-loglevel", "error", "-y")
        .run(cmd=ffmpeg_binaries()[0], capture_stdout=True, capture_stderr=True)
    )
    return path
