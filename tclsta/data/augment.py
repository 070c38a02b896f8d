"""TSN's multi-scale corner cropping (Wang et al., "Temporal Segment Networks", ECCV 2016, Sec. 3.3).

A training crop's height and width are each picked from ``SCALES`` times the
frame's short side, at most one scale step apart (so the aspect ratio jitters
too); the crop sits at one of the four corners or the centre, and is then
resized to the network's input size. One box serves all frames of a clip, so
the frames (and the flow stacks) stay aligned.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

SCALES = (1.0, 0.875, 0.75, 0.66)
MAX_SCALE_STEPS = 1  # TSN's max_distort: the height and width scales differ by at most one step


def multiscale_box(height: int, width: int, generator: torch.Generator) -> tuple[int, int, int, int]:
    """A random (top, left, crop height, crop width) box of a ``height`` x ``width`` frame."""
    base = min(height, width)
    pairs = [(h, w) for h in range(len(SCALES)) for w in range(len(SCALES)) if abs(h - w) <= MAX_SCALE_STEPS]
    h_index, w_index = pairs[int(torch.randint(len(pairs), (1,), generator=generator))]
    crop_h, crop_w = min(height, round(base * SCALES[h_index])), min(width, round(base * SCALES[w_index]))
    dy, dx = height - crop_h, width - crop_w
    corners = [(0, 0), (0, dx), (dy, 0), (dy, dx), (dy // 2, dx // 2)]
    top, left = corners[int(torch.randint(len(corners), (1,), generator=generator))]
    return top, left, crop_h, crop_w


def resize_clip(clip: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a (T, C, H, W) clip to (T, C, *size); any dtype OpenCV resizes (uint8, float32)."""
    t, c, h, w = clip.shape
    if (h, w) == tuple(size):
        return clip
    planes = np.ascontiguousarray(clip.reshape(t * c, h, w).transpose(1, 2, 0))  # (H, W, T*C)
    resized = np.concatenate(
        [cv2.resize(planes[..., i : i + 512], (size[1], size[0]), interpolation=cv2.INTER_LINEAR).reshape(size[0], size[1], -1)
         for i in range(0, t * c, 512)],  # OpenCV takes at most 512 channels at once
        axis=2,
    )
    return resized.transpose(2, 0, 1).reshape(t, c, *size)
