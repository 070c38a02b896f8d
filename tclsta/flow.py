"""TV-L1 optical flow: OpenCV (CPU, or CUDA when OpenCV was built with it) or batched PyTorch.

Backends (``flow.backend``): ``opencv`` (one pair per call, CPU), ``opencv-cuda``
(OpenCV's CUDA TV-L1, needs OpenCV built with CUDA), ``torch``
(:mod:`tclsta.tvl1_torch`, the same algorithm on batches of pairs, on CUDA when
torch sees a GPU, else on the CPU) and ``auto`` (OpenCV CUDA, else torch on
CUDA, else OpenCV on the CPU).

Flow between consecutive greyscale frames is clipped to +-bound pixels and
quantised to uint8 (the convention of the field's preprocessing tools, so
models trained elsewhere stay compatible): ``q = round((f + bound) * 255 / (2 * bound))``;
the shards store each component as a greyscale JPEG of quality ``flow.jpeg_quality``
(:func:`encode_flow`), as denseflow and mmaction2 do.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import multiprocessing
import traceback
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Callable, Hashable, Iterable, Iterator, Sequence, TypeVar

import cv2
import numpy as np

from tclsta.config import FlowConfig
from tclsta.errors import BadConfigError, WorkerError
from tclsta.settings import StageSettings, section_keys
from tclsta.video import decode_jpeg, encode_jpeg

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

FLOW_SETTINGS = StageSettings("flow", flow=section_keys("flow"))

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(prev, next) greyscale uint8 (H, W) -> flow (H, W, 2) float32."""
BatchFlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(prev, next) greyscale uint8 (N, H, W) -> flow (N, H, W, 2) float32."""


def cuda_available() -> bool:
    """True when this OpenCV has CUDA optical flow and sees a device."""
    try:
        return hasattr(cv2, "cuda") and hasattr(cv2.cuda, "OpticalFlowDual_TVL1") and cv2.cuda.getCudaEnabledDeviceCount() > 0
    except cv2.error:
        return False


# FlowConfig fields that are TV-L1 parameters, named as the torch backend's DualTVL1 names them.
TVL1_PARAMETERS = (
    "tau", "lambda_", "theta", "nscales", "warps", "epsilon",
    "inner_iterations", "outer_iterations", "scale_step", "median_filtering",
)


def torch_device() -> str:
    """Where the torch backend runs: ``cuda`` when torch sees a GPU, else ``cpu``."""
    import torch  # here, not at the top: the OpenCV backends' worker processes do without torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_backend(backend: str) -> str:
    """``auto`` becomes ``opencv-cuda`` where possible, else ``torch`` on a GPU, else ``opencv``."""
    if backend == "auto":
        if cuda_available():
            return "opencv-cuda"
        return "torch" if torch_device() == "cuda" else "opencv"
    if backend == "opencv-cuda" and not cuda_available():
        raise BadConfigError("flow.backend", "opencv-cuda needs an OpenCV built with CUDA and a visible GPU")
    return backend


def create_tvl1_batch(config: FlowConfig, device: str | None = None) -> BatchFlowFn:
    """The torch backend on ``device`` (default: :func:`torch_device`), a batch of pairs per call."""
    import torch

    from tclsta.tvl1_torch import DualTVL1

    device = device or torch_device()
    tvl1 = DualTVL1(**{name: getattr(config, name) for name in TVL1_PARAMETERS})

    def batch_flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            flow = tvl1(torch.from_numpy(prev).to(device), torch.from_numpy(nxt).to(device))
        return flow.cpu().numpy()

    return batch_flow


def create_tvl1(config: FlowConfig) -> FlowFn:
    """A function ``(prev_grey, next_grey) -> flow (H, W, 2) float32`` for the configured backend."""
    backend = resolve_backend(config.backend)
    if backend == "torch":
        batch_flow = create_tvl1_batch(config)
        return lambda prev, nxt: batch_flow(prev[None], nxt[None])[0]
    if backend == "opencv-cuda":
        # Positional: tau, lambda, theta, nscales, warps, epsilon, iterations, scaleStep.
        cuda_tvl1 = cv2.cuda.OpticalFlowDual_TVL1.create(
            config.tau,
            config.lambda_,
            config.theta,
            config.nscales,
            config.warps,
            config.epsilon,
            config.inner_iterations * config.outer_iterations,
            config.scale_step,
        )

        def cuda_flow(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
            flow = cuda_tvl1.calc(cv2.cuda_GpuMat(prev), cv2.cuda_GpuMat(nxt), None)
            return flow.download()

        return cuda_flow
    cpu_tvl1 = create_opencv_tvl1(config)
    return lambda prev, nxt: cpu_tvl1.calc(prev, nxt, None)


def create_opencv_tvl1(config: FlowConfig) -> cv2.optflow.DualTVL1OpticalFlow:
    """OpenCV's CPU TV-L1 object with every parameter ``config`` sets."""
    return cv2.optflow.DualTVL1OpticalFlow_create(
        tau=config.tau,
        lambda_=config.lambda_,
        theta=config.theta,
        nscales=config.nscales,
        warps=config.warps,
        epsilon=config.epsilon,
        innnerIterations=config.inner_iterations,  # sic: OpenCV's spelling
        outerIterations=config.outer_iterations,
        scaleStep=config.scale_step,
        medianFiltering=config.median_filtering,
    )


def quantise_flow(flow: np.ndarray, bound: float) -> np.ndarray:
    """(..., H, W, 2) float flow -> (..., 2, H, W) uint8."""
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2 * bound))
    return np.moveaxis(np.rint(scaled).astype(np.uint8), -1, -3)


def dequantise_flow(quantised: np.ndarray, bound: float) -> np.ndarray:
    """uint8 flow back to pixels (inverse of :func:`quantise_flow` up to rounding)."""
    return quantised.astype(np.float32) * (2 * bound / 255.0) - bound


def encode_flow(quantised: np.ndarray, quality: int) -> list[bytes]:
    """(n, 2, H, W) uint8 flow -> greyscale JPEGs of ``quality`` as the shards store them: x, y of each pair in turn."""
    return [encode_jpeg(np.ascontiguousarray(component), quality) for pair in quantised for component in pair]


def video_flow(grey_frames: np.ndarray, tvl1: FlowFn, bound: float) -> np.ndarray:
    """Quantised flow of consecutive frames: (T, H, W) uint8 -> (T-1, 2, H, W) uint8."""
    pairs = [quantise_flow(tvl1(a, b), bound) for a, b in zip(grey_frames[:-1], grey_frames[1:])]
    height, width = grey_frames.shape[1:3]
    return np.stack(pairs) if pairs else np.zeros((0, 2, height, width), np.uint8)


@dataclass
class _Video:
    key: Hashable
    grey: np.ndarray  # (T, H, W) uint8
    chunks: list[np.ndarray] = field(default_factory=list)  # quantised flow of consecutive pair ranges

    @property
    def done(self) -> bool:
        return sum(len(c) for c in self.chunks) >= len(self.grey) - 1

    def flow(self) -> np.ndarray:
        height, width = self.grey.shape[1:]
        return np.concatenate(self.chunks) if self.chunks else np.zeros((0, 2, height, width), np.uint8)


def batched_video_flow(
    videos: Iterable[tuple[Hashable, np.ndarray]], batch_flow: BatchFlowFn, bound: float, batch_pairs: int
) -> Iterator[tuple[Hashable, np.ndarray]]:
    """Quantised flow of many videos, ``batch_pairs`` frame pairs per ``batch_flow`` call.

    Takes ``(key, grey (T, H, W) uint8)`` items and yields ``(key, (T-1, 2, H, W) uint8)``
    in the same order. A batch holds consecutive pairs of one or several videos
    of the same frame size; a change of size starts a new batch.
    """
    waiting: list[_Video] = []  # videos not yet yielded, in order
    batch: list[tuple[_Video, int, int]] = []  # pair ranges [start, stop) of the next call

    def run_batch() -> None:
        prev = np.concatenate([v.grey[start:stop] for v, start, stop in batch])
        nxt = np.concatenate([v.grey[start + 1 : stop + 1] for v, start, stop in batch])
        flow = quantise_flow(batch_flow(prev, nxt), bound)  # (N, 2, H, W)
        offset = 0
        for video, start, stop in batch:
            video.chunks.append(flow[offset : offset + stop - start])
            offset += stop - start
        batch.clear()

    for key, grey in videos:
        video = _Video(key, grey)
        waiting.append(video)
        if batch and batch[0][0].grey.shape[1:] != grey.shape[1:]:
            run_batch()
        start, pairs = 0, len(grey) - 1
        while start < pairs:
            stop = min(pairs, start + batch_pairs - sum(b - a for _, a, b in batch))
            batch.append((video, start, stop))
            start = stop
            if sum(b - a for _, a, b in batch) == batch_pairs:
                run_batch()
        while waiting and waiting[0].done:
            done = waiting.pop(0)
            yield done.key, done.flow()
    if batch:
        run_batch()
    for video in waiting:
        yield video.key, video.flow()


def shard_flow(video_ids: Sequence[Hashable], read_jpegs: Callable[[Hashable], list[bytes]], config: FlowConfig,
               workers: int) -> Iterator[list[bytes]]:
    """The flow of each video as the shards store it (:func:`encode_flow`), in the order of ``video_ids``.

    ``read_jpegs(video_id)`` gives a video's JPEG-encoded RGB frames. The backend is
    ``config.backend`` resolved (:func:`resolve_backend`). OpenCV: videos in parallel
    across ``workers`` processes (CUDA: in this process only, one GPU context).
    torch: in this process, ``config.batch_pairs`` frame pairs of one or several
    videos per call, on the GPU when torch sees one (else on ``workers`` CPU
    threads), while a thread decodes the next videos' frames and ``workers``
    threads encode the flow as JPEG. Closing the iterator stops the worker
    processes and restores torch's thread count.
    """
    backend = resolve_backend(config.backend)
    config = dataclasses.replace(config, backend=backend)  # worker processes need not resolve "auto" again
    if backend == "torch":
        yield from _torch_flow(video_ids, read_jpegs, config, workers)
        return
    workers = 1 if backend == "opencv-cuda" else min(max(1, workers), max(1, len(video_ids)))
    log.info("flow backend %s, %d worker(s), %d videos to compute", backend, workers, len(video_ids))
    if workers == 1:
        tvl1 = _one_thread_tvl1(config)
        for video_id in video_ids:
            yield _encoded_flow(read_jpegs(video_id), tvl1, config)
        return
    yield from _process_flow(video_ids, read_jpegs, config, workers)


def _process_flow(video_ids: Sequence[Hashable], read_jpegs: Callable[[Hashable], list[bytes]], config: FlowConfig,
                  workers: int) -> Iterator[list[bytes]]:
    """OpenCV flow of each video, in order, by ``workers`` processes, each fed through its own pipe.

    Frames are read in the calling thread and sent to an idle worker, at most
    ``2 * workers`` videos ahead of the one being yielded. No lock, queue or helper
    thread is shared with the workers, so stopping them (the iterator closed, say
    after a write error) is a kill that cannot block; a worker that dies (killed,
    out of memory) is an error naming the video, not a hang.
    """
    # spawn, not fork: a forked child of a process that has used OpenCV threads can deadlock
    context = multiprocessing.get_context("spawn")
    processes: dict[Connection, BaseProcess] = {}
    try:
        for _ in range(workers):
            pipe, child_pipe = context.Pipe()
            process = context.Process(target=_flow_worker, args=(child_pipe, config), daemon=True)
            process.start()
            child_pipe.close()
            processes[pipe] = process
        idle, busy = list(processes), {}  # busy: pipe -> index of the video its worker computes
        results: dict[int, list[bytes]] = {}
        sent = done = 0
        while done < len(video_ids):
            while idle and sent < min(len(video_ids), done + 2 * workers):
                pipe, jpegs = idle.pop(), read_jpegs(video_ids[sent])
                busy[pipe] = sent
                try:
                    pipe.send(jpegs)
                except OSError:  # the worker is gone (broken pipe)
                    raise _worker_died(processes[pipe], video_ids[sent]) from None
                sent += 1
            if done in results:
                yield results.pop(done)
                done += 1
                continue
            for pipe in wait(list(busy)):
                index = busy.pop(pipe)
                try:
                    ok, value = pipe.recv()
                except (EOFError, OSError):  # the worker is gone (end of file, connection reset)
                    raise _worker_died(processes[pipe], video_ids[index]) from None
                if not ok:
                    raise RuntimeError(f"flow of {video_ids[index]} failed in a worker process:\n{value}")
                results[index] = value
                idle.append(pipe)
    finally:
        for pipe, process in processes.items():
            process.kill()
            process.join()
            pipe.close()


def _worker_died(process: BaseProcess, video_id: Hashable) -> WorkerError:
    process.join(timeout=10)
    return WorkerError(f"flow worker process {process.pid} ended (exit code {process.exitcode}) while computing "
                       f"the flow of {video_id}; killed, out of memory? Re-run the job")


def _torch_flow(video_ids: Sequence[Hashable], read_jpegs: Callable[[Hashable], list[bytes]], config: FlowConfig,
                workers: int) -> Iterator[list[bytes]]:
    import torch  # only this backend needs it

    device = torch_device()
    cpu_threads = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(max(1, workers))
    log.info("flow backend torch on %s, %d pairs per batch, %d videos to compute", device, config.batch_pairs, len(video_ids))
    try:
        with ThreadPoolExecutor(1) as decoder, ThreadPoolExecutor(max(1, workers)) as encoder:
            greys = (future.result() for future in in_order(lambda v: (v, grey_frames(read_jpegs(v))), video_ids, decoder, 2))
            flows = batched_video_flow(greys, create_tvl1_batch(config, device), config.bound, config.batch_pairs)
            for future in in_order(lambda item: encode_flow(item[1], config.jpeg_quality), flows, encoder, max(1, workers)):
                yield future.result()
    finally:
        torch.set_num_threads(cpu_threads)


def in_order(work: Callable[[T], R], items: Iterable[T], pool: ThreadPoolExecutor, ahead: int) -> Iterator[Future[R]]:
    """Futures of ``work(item)`` in the order of ``items``, at most ``ahead`` submitted ahead of the consumer."""
    items = iter(items)
    futures = deque(pool.submit(work, item) for item in itertools.islice(items, ahead))
    for item in items:
        yield futures.popleft()
        futures.append(pool.submit(work, item))
    yield from futures


def _one_thread_tvl1(config: FlowConfig) -> FlowFn:
    cv2.setNumThreads(1)  # one OpenCV thread per process: processes scale better than threads for TV-L1
    return create_tvl1(config)


def _encoded_flow(jpegs: list[bytes], tvl1: FlowFn, config: FlowConfig) -> list[bytes]:
    """One video's flow as the shards store it, from its JPEG-encoded RGB frames."""
    return encode_flow(video_flow(grey_frames(jpegs), tvl1, config.bound), config.jpeg_quality)


def _flow_worker(pipe: Connection, config: FlowConfig) -> None:
    """A worker process: JPEG frames in, ``(True, flow)`` or ``(False, traceback)`` out, until the pipe closes."""
    tvl1 = _one_thread_tvl1(config)
    while True:
        try:
            jpegs = pipe.recv()
        except EOFError:  # the parent closed its end or died
            return
        try:
            result = True, _encoded_flow(jpegs, tvl1, config)
        except Exception:
            result = False, traceback.format_exc()
        pipe.send(result)


def grey_frames(jpegs: list[bytes]) -> np.ndarray:
    """Greyscale frames (T, H, W) uint8 from JPEG-encoded RGB frames."""
    return np.stack([cv2.cvtColor(decode_jpeg(j), cv2.COLOR_RGB2GRAY) for j in jpegs])


