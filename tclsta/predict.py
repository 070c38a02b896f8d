"""Prediction on new videos with a trained dataset: the same preprocessing, in memory.

``python -m tclsta predict results/<dataset> video.mp4 [...]`` decodes each video
with the dataset's settings, samples the test-time frames, computes TV-L1 flow
for just the pairs the motion stream needs, scores both streams and fuses them
with the learned weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from tclsta.config import yaml_key
from tclsta.data.dataset import flow_clip, flow_windows, rgb_clip, segment_indices, test_views
from tclsta.errors import BadVideoError, FileError
from tclsta.evaluate import read_fusion
from tclsta.flow import TVL1_PARAMETERS, create_tvl1, quantise_flow
from tclsta.inference import TEST_PROTOCOL, inference_clip_spec, load_checkpoint, pick_device, video_logits
from tclsta.settings import StageSettings
from tclsta.video import decode_frames

PREDICT_SETTINGS = StageSettings(
    "predict",
    preprocess=("short_side",),
    flow=("backend", "bound", *map(yaml_key, TVL1_PARAMETERS)),
    train=TEST_PROTOCOL,
)
"""What prediction repeats: the dataset's decoding, flow and test protocol, recorded in each stream's checkpoint."""


@dataclass
class Prediction:
    video: str
    top5: list[tuple[str, float]]  # (class, fused probability), best first


class Predictor:
    """Both trained streams and the fusion weights of one dataset's results folder."""

    def __init__(self, model_dir: Path, device: str = "auto"):
        model_dir = Path(model_dir)
        self.device = pick_device(device, "--device")
        paths = [model_dir / "models" / "rgb.pt", model_dir / "models" / "flow.pt", model_dir / "fusion.json"]
        for path in paths:
            if not path.is_file():
                raise FileError(path, "missing: run the pipeline for this dataset first (snakemake results/<dataset>/report.html)")
        self.rgb, rgb_config, state = load_checkpoint(paths[0], self.device)
        self.flow, flow_config, _ = load_checkpoint(paths[1], self.device)
        self.classes: list[str] = state["classes"]
        settings = PREDICT_SETTINGS.parse(state["settings"])
        self.short_side = settings.preprocess.short_side
        self.rgb_spec = inference_clip_spec("rgb", rgb_config.flow_stack, settings.train)
        self.flow_spec = inference_clip_spec("flow", flow_config.flow_stack, settings.train)
        self.tvl1, self.bound = create_tvl1(settings.flow), settings.flow.bound
        self.fusion = read_fusion(paths[2])

    def clips(self, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Test-time clips of decoded frames (N, H, W, 3): RGB (1, [crops,] T, 3, h, w) and flow (1, [crops,] T, 2L, h, w)."""
        picks = segment_indices(len(frames), self.rgb_spec.num_frames, None)
        rgb = test_views(rgb_clip(frames[picks]), self.rgb_spec)
        windows = flow_windows(len(frames), self.flow_spec, None)
        needed = sorted(set(np.concatenate(windows).tolist()))
        grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
        pairs = np.stack([quantise_flow(self.tvl1(grey[i], grey[i + 1]), self.bound) for i in needed])
        flow = test_views(flow_clip(pairs, needed, windows), self.flow_spec)
        return torch.from_numpy(rgb)[None], torch.from_numpy(flow)[None]

    @torch.no_grad()
    def predict(self, video: Path) -> Prediction:
        """Top-5 classes of one video by fused probability."""
        frames = decode_frames(Path(video), self.short_side)
        if len(frames) < 2:
            raise BadVideoError(video, f"{len(frames)} frame(s): optical flow needs at least 2")
        rgb, flow = self.clips(frames)
        fused = self.fusion.fuse(video_logits(self.rgb, rgb.to(self.device)).cpu(), video_logits(self.flow, flow.to(self.device)).cpu())
        probabilities = fused.softmax(1)[0]
        top = probabilities.topk(min(5, len(self.classes)))
        return Prediction(str(video), [(self.classes[i], float(p)) for p, i in zip(top.values, top.indices)])
