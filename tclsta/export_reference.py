"""A tclsta bundle's scores from a video's decoded frames, with numpy and onnxruntime only.

``tclsta export`` copies this file into the bundle as ``reference.py``; it follows the bundle's
``bundle.json`` ("preprocessing") step by step and gives the probabilities ``tclsta predict`` gives::

    import reference
    bundle = reference.Bundle("bundles/demo")
    frames = ...      # the video's frames, RGB uint8 (H, W, 3), decoded at bundle.json's preprocessing.decode size
    flow = ...        # a TV-L1 with bundle.spec["flow"]["tvl1"]'s parameters, e.g. OpenCV's DualTVL1OpticalFlow
    probabilities = bundle.probabilities(frames, flow)      # (K,), classes in bundle.classes' order

Only the frames ``bundle.frames_needed(len(frames))`` lists are read, so ``frames`` may be a dict holding those.
The flow function is the consumer's TV-L1 with the bundle's parameters: (grey frame, next grey frame), uint8
(H, W) each -> flow (H, W, 2) float32.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import onnxruntime

Flow = Callable[[np.ndarray, np.ndarray], np.ndarray]


def segment_starts(positions: int, segments: int) -> list[int]:
    """The centre of each of ``segments`` equal segments of ``range(positions)``."""
    edges = np.linspace(0, positions, segments + 1)
    return np.clip(np.floor((edges[:-1] + edges[1:]) / 2).astype(int), 0, positions - 1).tolist()


def grey(frame: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> grey uint8 (H, W), OpenCV's fixed-point BT.601 weights."""
    rgb = frame.astype(np.int32)
    return ((4899 * rgb[..., 0] + 9617 * rgb[..., 1] + 1868 * rgb[..., 2] + 8192) >> 14).astype(np.uint8)


def softmax(x: np.ndarray) -> np.ndarray:
    exp = np.exp(x - x.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


class Bundle:
    """The graphs, fusion weights and preprocessing recipe of one bundle folder."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        described = json.loads((folder / "bundle.json").read_text())
        self.spec, self.classes, self.best = described["preprocessing"], described["classes"], described["best"]
        self.graphs = {name: onnxruntime.InferenceSession(str(folder / f"{name}.onnx"), providers=["CPUExecutionProvider"])
                       for name in ("rgb", "flow", "collaborative")}
        self.fusion = np.array(json.loads((folder / "fusion.json").read_text())["raw_per_class"], np.float32)  # (2, K)

    def rgb_frames(self, num_frames: int) -> list[int]:
        return segment_starts(num_frames, self.spec["rgb"]["frames"])

    def flow_windows(self, num_frames: int) -> list[list[int]]:
        """For each segment, the flow pairs (p: frame p to p + 1) of its window."""
        stack = self.spec["flow"]["flow_stack"]
        starts = segment_starts(max(1, num_frames - stack), self.spec["flow"]["frames"])
        return [[min(s + j, num_frames - 2) for j in range(stack)] for s in starts]

    def frames_needed(self, num_frames: int) -> list[int]:
        pairs = {p for window in self.flow_windows(num_frames) for p in window}
        return sorted({*self.rgb_frames(num_frames), *pairs, *(p + 1 for p in pairs)})

    def crops(self, clip: np.ndarray, stream: str) -> np.ndarray:
        """uint8 clip (T, C, H, W) -> its test crops (V, T, C, h, w)."""
        height, width = clip.shape[-2:]
        h, w = min(self.spec["crop"]["size"][0], height), min(self.spec["crop"]["size"][1], width)
        centre = ((height - h) // 2, (width - w) // 2)
        if self.spec["crop"]["test_crops"][stream] == 1:
            corners = [centre]
        else:
            corners = [(0, 0), (0, width - w), (height - h, 0), (height - h, width - w), centre]
        views = [clip[..., top:top + h, left:left + w] for top, left in corners]
        if len(views) > 1:
            mirrored = [view[..., ::-1].copy() for view in views]
            if stream == "flow":
                for view in mirrored:
                    view[:, 0::2] = 255 - view[:, 0::2]  # x components change sign
            views += mirrored
        return np.stack(views)

    def inputs(self, frames: Mapping[int, np.ndarray] | Sequence[np.ndarray], flow: Flow,
               num_frames: int | None = None) -> dict[str, np.ndarray]:
        """Both graphs' float32 inputs (V, T, C, h, w) from the decoded frames (``num_frames``: the video's frame
        count when ``frames`` holds only the needed ones)."""
        num_frames = len(frames) if num_frames is None else num_frames
        rgb_spec, flow_spec = self.spec["rgb"], self.spec["flow"]
        rgb = np.stack([frames[i] for i in self.rgb_frames(num_frames)]).transpose(0, 3, 1, 2)  # (T, 3, H, W)
        mean = np.array(rgb_spec["mean"], np.float32).reshape(3, 1, 1) * rgb_spec["scale"]
        std = np.array(rgb_spec["std"], np.float32).reshape(3, 1, 1) * rgb_spec["scale"]
        windows = self.flow_windows(num_frames)
        bound = flow_spec["bound"]
        quantised = {}
        for pair in sorted({p for window in windows for p in window}):
            f = np.clip(flow(grey(frames[pair]), grey(frames[pair + 1])), -bound, bound)
            quantised[pair] = np.rint((f + bound) * (255.0 / (2 * bound))).astype(np.uint8).transpose(2, 0, 1)  # (2, H, W)
        stacks = np.stack([np.concatenate([quantised[p] for p in window]) for window in windows])  # (T, 2L, H, W)
        return {"rgb": (self.crops(rgb, "rgb").astype(np.float32) - mean) / std,
                "flow": self.crops(stacks, "flow").astype(np.float32) * np.float32(2.0 / 255.0) - np.float32(1.0)}

    def probabilities(self, frames: Mapping[int, np.ndarray] | Sequence[np.ndarray], flow: Flow,
                      model: str | None = None, num_frames: int | None = None) -> np.ndarray:
        """(K,) class probabilities of one video by ``model`` ("fusion" or "collaborative"; None: the bundle's best)."""
        logits, features = {}, {}
        for stream, clips in self.inputs(frames, flow, num_frames).items():
            stream_logits, stream_features = self.graphs[stream].run(None, {"clips": clips})
            logits[stream], features[stream] = stream_logits.mean(0), stream_features.mean(0, keepdims=True)  # over crops
        if (model or self.best) == "collaborative":
            scores = self.graphs["collaborative"].run(None, {"static": features["rgb"], "motion": features["flow"]})[0][0]
        else:
            scores = self.fusion[0] * log_softmax(logits["rgb"]) + self.fusion[1] * log_softmax(logits["flow"])
        return softmax(scores)
