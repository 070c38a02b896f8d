"""Prediction on new videos with a trained dataset: the same preprocessing, in memory.

``python -m tclsta predict results/<dataset> video.mp4 [...]`` decodes each video
with the dataset's settings, samples the test-time frames, computes TV-L1 flow
for just the pairs the motion stream needs, scores both streams and combines them
with the chosen model (``--model``): the learned fusion of the two streams' scores,
or the collaborative model on their frame features; by default the one the
results' ``model_choice.json`` names. A multi-label model (:mod:`tclsta.multilabel`) also gives
every class's probability and the classes above a threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from tclsta.config import TrainConfig, yaml_key
from tclsta.data.dataset import flow_clip, flow_windows, rgb_clip, segment_indices, test_views
from tclsta.errors import BadVideoError, as_bad_video
from tclsta.evaluate import fusion_weights
from tclsta.export import load_models
from tclsta.flow import TVL1_PARAMETERS, create_tvl1, quantise_flow
from tclsta.inference import TEST_PROTOCOL, chunked_outputs, inference_clip_spec, pick_device, video_logits
from tclsta.multilabel import THRESHOLD
from tclsta.settings import StageSettings
from tclsta.video import sample_frames

PREDICT_SETTINGS = StageSettings(
    "predict",
    preprocess=("short_side", "max_frame_pixels", "max_video_frames", "max_video_seconds"),
    flow=("backend", "bound", *map(yaml_key, TVL1_PARAMETERS)),
    train=TEST_PROTOCOL,
)
"""What prediction repeats: the dataset's decoding (and its limits), flow and test protocol, recorded in each
stream's checkpoint."""


@dataclass
class Prediction:
    video: str
    top5: list[tuple[str, float]]  # (class, fused probability), best first
    probabilities: dict[str, float] | None = None  # multi-label model: every class's probability
    labels: list[str] | None = None  # multi-label model: the classes whose probability is above the threshold


class Predictor:
    """Both trained streams and the model that combines them, of one dataset's results folder or bundle."""

    def __init__(self, model_dir: Path, device: str = "auto", model: str = "best",
                 inference_batch: int = TrainConfig.inference_batch):
        """``model_dir``: a dataset's results folder, or a bundle that ``tclsta export`` wrote; ``model``: "fusion",
        "collaborative", or "best" (``tclsta.export.load_models``); ``inference_batch``: images per forward pass
        (:func:`tclsta.inference.chunked_outputs`)."""
        self.device = pick_device(device, "--device")
        self.inference_batch = inference_batch
        models = load_models(model_dir, self.device, model)
        self.rgb, self.flow = models.rgb, models.flow
        self.model, self.collaborative = models.model, models.collaborative
        self.classes: list[str] = models.classes
        settings = PREDICT_SETTINGS.parse(models.settings)
        self.preprocess = settings.preprocess
        # each stream's own test protocol (train keys may differ per stream)
        flow_train = PREDICT_SETTINGS.parse({**models.settings, "train": models.flow_train}).train
        self.rgb_spec = inference_clip_spec("rgb", models.rgb_config.flow_stack, settings.train)
        self.flow_spec = inference_clip_spec("flow", models.flow_config.flow_stack, flow_train)
        self.tvl1, self.bound = create_tvl1(settings.flow), settings.flow.bound
        self.fusion = fusion_weights(models.fusion)

    def sampled(self, num_frames: int) -> tuple[list[int], list[np.ndarray], list[int]]:
        """Of a video of ``num_frames`` frames: the RGB stream's frames, the flow windows and the
        first frames of the flow pairs those windows need."""
        picks = segment_indices(num_frames, self.rgb_spec.num_frames, None)
        windows = flow_windows(num_frames, self.flow_spec, None)
        pairs = sorted(set(np.concatenate(windows).tolist()))
        return picks, windows, pairs

    def frames_needed(self, num_frames: int) -> set[int]:
        """Every frame the two streams read, flow pairs (i, i + 1) included."""
        picks, _, pairs = self.sampled(num_frames)
        return {*picks, *pairs, *(i + 1 for i in pairs)}

    def clips(self, num_frames: int, frames: dict[int, np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Test-time uint8 clips from the needed frames (index -> (H, W, 3)) of a video of ``num_frames``:
        RGB (1, [crops,] T, 3, h, w) and flow (1, [crops,] T, 2L, h, w)."""
        picks, windows, needed = self.sampled(num_frames)
        rgb = test_views(torch.from_numpy(rgb_clip(np.stack([frames[i] for i in picks]))), self.rgb_spec)
        grey = {i: cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for i, frame in frames.items()}
        pairs = np.stack([quantise_flow(self.tvl1(grey[i], grey[i + 1]), self.bound) for i in needed])
        flow = test_views(torch.from_numpy(flow_clip(pairs, needed, windows)), self.flow_spec)
        return rgb[None], flow[None]

    @torch.no_grad()
    def scores(self, rgb: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """(B, K) scores of the chosen model from uint8 test clips (B, [crops,] T, C, h, w) of both streams: the
        fused log-probabilities, or the collaborative model's logits on the frame features (averaged over crops)."""
        if self.model == "collaborative":
            static, motion = (chunked_outputs(stream, clips, self.device, self.inference_batch, ("features",))["features"]
                              for stream, clips in ((self.rgb, rgb), (self.flow, flow)))
            return self.collaborative(static.to(self.device), motion.to(self.device)).cpu()
        return self.fusion.fuse(video_logits(self.rgb, rgb, self.device, self.inference_batch),
                                video_logits(self.flow, flow, self.device, self.inference_batch))

    @torch.no_grad()
    def predict(self, video: Path, threshold: float = THRESHOLD) -> Prediction:
        """Top-5 classes of one video by the chosen model's probability (a multi-label model: also every class's
        probability and the classes above ``threshold``). Any failure is a ``BadVideoError`` naming it."""
        try:
            return self._predict(Path(video), threshold)
        except Exception as exc:
            raise as_bad_video(video, exc) from exc

    def sample(self, video: Path) -> tuple[int, dict[int, np.ndarray]]:
        """A video's frame count and the frames the two streams read (index -> RGB (H, W, 3) uint8)."""
        num_frames, frames = sample_frames(video, self.frames_needed, self.preprocess.short_side, self.preprocess)
        if num_frames < 2:
            raise BadVideoError(video, f"{num_frames} frame(s): optical flow needs at least 2")
        return num_frames, frames

    def _predict(self, video: Path, threshold: float) -> Prediction:
        probabilities = self.fusion.objective.probabilities(self.scores(*self.clips(*self.sample(video))))[0]
        top = probabilities.topk(min(5, len(self.classes)))
        prediction = Prediction(str(video), [(self.classes[i], float(p)) for p, i in zip(top.values, top.indices)])
        if self.fusion.objective.multilabel:
            prediction.probabilities = dict(zip(self.classes, probabilities.tolist()))
            prediction.labels = [name for name, p in prediction.probabilities.items() if p > threshold]
        return prediction
