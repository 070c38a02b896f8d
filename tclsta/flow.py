"""TV-L1 optical flow with OpenCV, on CUDA when OpenCV was built with it and a GPU is present.

Flow between consecutive greyscale frames is clipped to +-bound pixels and
quantised to uint8 (the convention of the field's preprocessing tools, so
models trained elsewhere stay compatible): ``q = round((f + bound) * 255 / (2 * bound))``.
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from tclsta.config import FlowConfig
from tclsta.errors import BadConfigError

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def cuda_available() -> bool:
    """True when this OpenCV has CUDA optical flow and sees a device."""
    try:
        return hasattr(cv2, "cuda") and hasattr(cv2.cuda, "OpticalFlowDual_TVL1") and cv2.cuda.getCudaEnabledDeviceCount() > 0
    except cv2.error:
        return False


def resolve_backend(backend: str) -> str:
    """``auto`` becomes ``opencv-cuda`` where possible, else ``opencv``."""
    if backend == "auto":
        return "opencv-cuda" if cuda_available() else "opencv"
    if backend == "opencv-cuda" and not cuda_available():
        raise BadConfigError("flow.backend", "opencv-cuda needs an OpenCV built with CUDA and a visible GPU")
    return backend


def create_tvl1(config: FlowConfig) -> FlowFn:
    """A function ``(prev_grey, next_grey) -> flow (H, W, 2) float32`` for the configured backend."""
    backend = resolve_backend(config.backend)
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
    cpu_tvl1 = cv2.optflow.DualTVL1OpticalFlow_create(
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
    return lambda prev, nxt: cpu_tvl1.calc(prev, nxt, None)


def quantise_flow(flow: np.ndarray, bound: float) -> np.ndarray:
    """(H, W, 2) float flow -> (2, H, W) uint8."""
    scaled = (np.clip(flow, -bound, bound) + bound) * (255.0 / (2 * bound))
    return np.rint(scaled).astype(np.uint8).transpose(2, 0, 1)


def dequantise_flow(quantised: np.ndarray, bound: float) -> np.ndarray:
    """uint8 flow back to pixels (inverse of :func:`quantise_flow` up to rounding)."""
    return quantised.astype(np.float32) * (2 * bound / 255.0) - bound


def video_flow(grey_frames: np.ndarray, tvl1: FlowFn, bound: float) -> np.ndarray:
    """Quantised flow of consecutive frames: (T, H, W) uint8 -> (T-1, 2, H, W) uint8."""
    pairs = [quantise_flow(tvl1(a, b), bound) for a, b in zip(grey_frames[:-1], grey_frames[1:])]
    height, width = grey_frames.shape[1:3]
    return np.stack(pairs) if pairs else np.zeros((0, 2, height, width), np.uint8)
