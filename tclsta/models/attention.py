"""Spatial-level and temporal-level attention of one stream.

Peng, Zhao, Zhang, "Two-stream Collaborative Learning with Spatial-Temporal
Attention for Video Classification", arXiv 1711.03273, Sec. III-A.

* Spatial-level attention ("weights pooling"): a class activation map (CAM)
  head scores every position of a frame's feature map; a softmax over the
  positions gives the weights of a weighted sum that replaces average pooling.
* Temporal-level attention: an LSTM runs over the per-frame features with a
  classifier at every step, and soft attention over the steps weights the
  discriminative frames in the video-level feature.

What the paper leaves open about the spatial map is an option here: which class
map drives it (``class_source``, including ``soft``: every class's map weighted
by the head's class probabilities), the softmax temperature (fixed or learned)
and whether the temporal loss reaches the attention weights (``detach``); the
form of the temporal score is a documented choice. Each module can be switched off for ablations, falling back to
plain average pooling over positions or over steps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["CLASS_SOURCES", "SpatialAttention", "TemporalAttention", "attention_entropy"]

CLASS_SOURCES = ("label", "predicted", "agnostic", "soft")


class SpatialAttention(nn.Module):
    """Attention pooling of a feature map driven by a class activation map.

    The CAM head is a 3x3 convolution to ``hidden`` channels, a ReLU and a 1x1
    classifier convolution giving one map per class (N, K, h, w); their global
    average is the head's own logits (N, K), trained with their own loss. The
    map of one class, softmax-normalised over the h*w positions, weights the sum
    of the backbone features.

    Args:
        in_channels: channels C of the backbone feature map.
        num_classes: number of classes K.
        hidden: channels of the CAM head's 3x3 convolution (1024 in the paper).
        class_source: which class map drives the attention: "label" (ground
            truth in training, the CAM prediction in evaluation), "predicted"
            (the CAM prediction), "agnostic" (the mean map over classes) or
            "soft" (the maps weighted by the CAM head's class probabilities).
        temperature: the positions' softmax temperature, a fixed number or
            "learned" (a parameter, starting at 1).
        detach: pool with attention weights detached from the graph, so the
            pooled feature's losses (the temporal head's) do not train the
            CAM head through them; the CAM head then learns from its own loss.
        enabled: if False, plain average pooling with a uniform attention map
            and no CAM head.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hidden: int = 1024,
        class_source: str = "agnostic",
        temperature: float | str = 1.0,
        detach: bool = False,
        enabled: bool = True,
    ) -> None:
        super().__init__()
        if class_source not in CLASS_SOURCES:
            raise ValueError(f"class_source must be one of {CLASS_SOURCES}, got '{class_source}'")
        if temperature != "learned" and not (isinstance(temperature, (int, float)) and temperature > 0):
            raise ValueError(f"temperature must be a positive number or 'learned', got {temperature!r}")
        self.class_source = class_source
        self.detach = detach
        learned = temperature == "learned" and enabled
        self.log_temperature = nn.Parameter(torch.zeros(())) if learned else None
        self.fixed_temperature = 1.0 if temperature == "learned" else float(temperature)
        self.cam = (
            nn.Sequential(
                nn.Conv2d(in_channels, hidden, kernel_size=3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(hidden, num_classes, kernel_size=1),
            )
            if enabled
            else None
        )

    def forward(self, features: Tensor, labels: Tensor | None = None) -> tuple[Tensor, Tensor | None, Tensor]:
        """Pool ``features`` (N, C, h, w); ``labels`` (N,) are needed for class_source "label" in training.

        Returns the pooled features (N, C), the CAM logits (N, K) or None when
        disabled, and the attention weights (N, h, w), summing to 1 per frame.
        """
        n, _, h, w = features.shape
        if self.cam is None:
            attention = features.new_full((n, h, w), 1.0 / (h * w))  # (N, h, w)
            return features.mean(dim=(2, 3)), None, attention

        class_maps = self.cam(features)  # (N, K, h, w)
        cam_logits = class_maps.mean(dim=(2, 3))  # (N, K)
        scores = self._attention_scores(class_maps, cam_logits, labels) / self.temperature  # (N, h, w)
        attention = scores.flatten(1).softmax(dim=1).view(n, h, w)  # (N, h, w)
        weights = attention.detach() if self.detach else attention
        pooled = torch.einsum("nchw,nhw->nc", features, weights)  # (N, C)
        return pooled, cam_logits, attention

    @property
    def temperature(self) -> Tensor | float:
        """The positions' softmax temperature (a 0-d tensor when learned)."""
        return self.fixed_temperature if self.log_temperature is None else self.log_temperature.exp()

    def _attention_scores(self, class_maps: Tensor, cam_logits: Tensor, labels: Tensor | None) -> Tensor:
        """Pick the (N, h, w) map of the class chosen by ``class_source``."""
        if self.class_source == "agnostic":
            return class_maps.mean(dim=1)
        if self.class_source == "soft":
            probabilities = cam_logits.detach().softmax(dim=1)  # (N, K)
            return torch.einsum("nkhw,nk->nhw", class_maps, probabilities)
        if self.class_source == "label" and self.training:
            if labels is None:
                raise ValueError("class_source='label' needs labels in training mode")
            classes = labels
        else:
            classes = cam_logits.detach().argmax(dim=1)  # (N,)
        return class_maps[torch.arange(class_maps.shape[0], device=class_maps.device), classes]


def attention_entropy(attention: Tensor) -> Tensor:
    """Mean entropy of attention maps (..., h, w), each summing to 1, over log(h*w): 1 is uniform, 0 one position."""
    positions = attention.shape[-2] * attention.shape[-1]
    if positions == 1:
        return attention.new_zeros(())
    flat = attention.flatten(-2)  # (..., h*w)
    entropy = -(flat * flat.clamp_min(1e-12).log()).sum(-1)  # (...)
    return entropy.mean() / torch.log(torch.tensor(float(positions)))


class TemporalAttention(nn.Module):
    """LSTM over per-frame features with soft attention over its steps.

    beta_t = softmax_t(w^T tanh(W h_t + b)), video feature = sum_t beta_t h_t.
    One linear classifier is shared by every step and by the video feature, so
    the video logits equal the beta-weighted sum of the step logits.

    Args:
        in_features: dimension D of a frame feature.
        num_classes: number of classes K.
        hidden: LSTM units (512 in the paper); W is hidden x hidden.
        enabled: if False, uniform weights over the steps and no attention layers.
    """

    def __init__(self, in_features: int, num_classes: int, hidden: int = 512, enabled: bool = True) -> None:
        super().__init__()
        self.lstm = nn.LSTM(in_features, hidden, batch_first=True)
        self.classifier = nn.Linear(hidden, num_classes)
        self.score = (
            nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1, bias=False))
            if enabled
            else None
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Classify a sequence ``x`` (B, T, D).

        Returns the video logits (B, K), the per-step logits (B, T, K) and the
        attention weights beta (B, T), summing to 1 per video.
        """
        states, _ = self.lstm(x)  # (B, T, hidden)
        step_logits = self.classifier(states)  # (B, T, K)
        if self.score is None:
            beta = states.new_full(states.shape[:2], 1.0 / states.shape[1])  # (B, T)
        else:
            beta = self.score(states).squeeze(-1).softmax(dim=1)  # (B, T)
        video_feature = torch.einsum("bth,bt->bh", states, beta)  # (B, hidden)
        return self.classifier(video_feature), step_logits, beta
