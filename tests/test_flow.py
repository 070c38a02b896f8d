"""TV-L1 with the real OpenCV: direction and size of known motion, quantisation, worker processes."""

import multiprocessing
import os
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tclsta.config import FlowConfig
from tclsta.data.dataset import decode_flow_jpegs
from tclsta.errors import WorkerError
from tclsta.flow import create_tvl1, dequantise_flow, encode_flow, quantise_flow, shard_flow, video_flow


def textured_frames(shift: tuple[int, int], count: int = 3, size: tuple[int, int] = (64, 80)) -> np.ndarray:
    """Greyscale frames of a smooth random texture translating by ``shift`` (dx, dy) pixels per frame."""
    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur((rng.random((size[0] + 40, size[1] + 40)) * 255).astype(np.uint8), (7, 7), 0)
    frames = []
    for t in range(count):
        dy, dx = 20 - t * shift[1], 20 - t * shift[0]
        frames.append(big[dy : dy + size[0], dx : dx + size[1]])
    return np.stack(frames)


@pytest.mark.parametrize("shift", [(2, 0), (0, -2), (-1, 1)])
def test_tvl1_recovers_translation(shift):
    config = FlowConfig(backend="opencv", nscales=3, warps=3, epsilon=0.05)
    frames = textured_frames(shift)
    flow = video_flow(frames, create_tvl1(config), config.bound)
    assert flow.shape == (2, 2, 64, 80) and flow.dtype == np.uint8
    pixels = dequantise_flow(flow[:, :, 12:-12, 12:-12], config.bound)  # away from the borders
    assert pixels[:, 0].mean() == pytest.approx(shift[0], abs=0.3)
    assert pixels[:, 1].mean() == pytest.approx(shift[1], abs=0.3)


def test_quantisation_round_trip_and_clipping():
    flow = np.array([[[-30.0, 0.0], [5.0, 19.9]]], dtype=np.float32)  # (1, 2, 2)
    quantised = quantise_flow(flow, bound=20)
    assert quantised.shape == (2, 1, 2)
    restored = dequantise_flow(quantised, 20).transpose(1, 2, 0)
    assert restored[0, 0, 0] == pytest.approx(-20)  # clipped
    assert np.abs(restored[0, 1] - flow[0, 1]).max() < 20 / 255 + 1e-6


@pytest.mark.parametrize("shift", [(2, 0), (-1, 1)])
def test_flow_as_stored_decodes_close_to_the_quantised_flow(shift):
    """JPEG at the default quality 95: mean error under a quarter level (0.04 px at bound 20), 99% of the
    values within one level, none beyond 8; a lower quality takes fewer bytes."""
    config = FlowConfig(backend="opencv", nscales=3, warps=3, epsilon=0.05)
    quantised = video_flow(textured_frames(shift, count=4), create_tvl1(config), config.bound)  # (3, 2, H, W)
    stored = encode_flow(quantised, config.jpeg_quality)
    assert len(stored) == 6 and all(jpeg.startswith(b"\xff\xd8") for jpeg in stored)  # x, y of each pair
    error = np.abs(decode_flow_jpegs(stored).astype(int) - quantised.astype(int))
    assert error.mean() < 0.25 and (error <= 1).mean() > 0.99 and error.max() <= 8
    assert sum(map(len, encode_flow(quantised, 50))) < sum(map(len, stored))


def test_auto_backend_falls_back_to_cpu_without_cuda():
    """A machine without CUDA, simulated by hiding every GPU from torch and OpenCV in a fresh process."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    code = "from tclsta.flow import resolve_backend; print(resolve_backend('auto'), resolve_backend('opencv'))"
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.split() == ["opencv", "opencv"]


def jpeg_video(shift: tuple[int, int]) -> list[bytes]:
    """8 JPEG frames (64 x 80) of a translating texture."""
    return [cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))[1].tobytes() for f in textured_frames(shift, 8)]


VIDEOS = {f"video{i}": jpeg_video((i % 3 - 1, 1)) for i in range(12)}
CPU_FLOW = FlowConfig(backend="opencv", nscales=2, warps=2, epsilon=0.05)


def test_worker_processes_give_the_flow_of_one_process_in_order_and_stop_when_closed():
    ids = list(VIDEOS)
    expected = list(shard_flow(ids, VIDEOS.__getitem__, CPU_FLOW, workers=1))
    assert [len(f) for f in expected] == [2 * 7] * len(ids)  # x and y JPEGs of 7 pairs
    assert list(shard_flow(ids, VIDEOS.__getitem__, CPU_FLOW, workers=3)) == expected
    flows = shard_flow(ids, VIDEOS.__getitem__, CPU_FLOW, workers=2)
    assert next(flows) == expected[0]
    flows.close()  # as after a write error, with workers computing or holding results nobody reads
    assert multiprocessing.active_children() == []


@pytest.mark.timeout(120)  # a worker pool that loses the killed worker's video waits for it forever
def test_a_worker_killed_midway_is_an_error_naming_the_video_not_a_hang():
    others = set(multiprocessing.active_children())
    flows = shard_flow(list(VIDEOS), VIDEOS.__getitem__, CPU_FLOW, workers=2)
    next(flows)
    for worker in set(multiprocessing.active_children()) - others:  # as the kernel's out-of-memory killer would
        os.kill(worker.pid, signal.SIGKILL)
    with pytest.raises(WorkerError, match=r"flow worker process \d+ ended \(exit code -9\) while computing the flow of video\d"):
        list(flows)
    assert multiprocessing.active_children() == []
