"""One stream of the spatial-temporal attention model.

Peng, Zhao, Zhang, "Two-stream Collaborative Learning with Spatial-Temporal
Attention for Video Classification", arXiv 1711.03273, Sec. III-A. The static
stream sees RGB frames (3 channels), the motion stream stacks of L optical-flow
x/y pairs (2L channels). Three heads share one backbone and are "jointly
learned and mutually boosted":

1. a plain classifier on the average-pooled feature map of each frame;
2. the spatial attention (CAM) head, with its own classifier, pooling each
   frame into an attended feature;
3. the temporal attention head, an LSTM over the attended frame features with
   a classifier at every step and soft attention over the steps; its
   video-level logits are the stream's prediction.

``stream_loss`` sums the cross-entropy losses of the three heads;
``AttentionStream.parts`` splits the network by head so that a
trainer can run the paper's three training stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from tclsta.models.attention import SpatialAttention, TemporalAttention
from tclsta.models.backbones import build_backbone

__all__ = ["AttentionStream", "StreamOutput", "stream_loss"]


@dataclass
class StreamOutput:
    """Everything one forward pass of an ``AttentionStream`` produces."""

    logits: Tensor
    """(B, K) video-level logits of the temporal head: the stream's prediction."""
    frame_logits: Tensor
    """(B, T, K) logits of the plain classifier on average-pooled frame features."""
    cam_logits: Tensor | None
    """(B, T, K) logits of the CAM head, None when spatial attention is off."""
    step_logits: Tensor
    """(B, T, K) logits of the temporal head at every LSTM step."""
    spatial_attention: Tensor
    """(B, T, h, w) attention weights over feature-map positions."""
    temporal_attention: Tensor
    """(B, T) attention weights over frames."""
    features: Tensor
    """(B, T, D) attended frame features, the input of the collaborative model."""


class AttentionStream(nn.Module):
    """Backbone, spatial attention, temporal attention and a plain frame classifier.

    Args:
        num_classes: number of classes K.
        backbone: "small", "resnet18" or "resnet50" (the paper's), see ``build_backbone``.
        in_channels: 3 for the static stream, 2L for the motion stream.
        spatial: use spatial attention; if False, average pooling (ablation).
        temporal: use temporal attention; if False, a uniform average over steps (ablation).
        spatial_hidden: channels of the CAM head (1024 in the paper).
        temporal_hidden: LSTM units (512 in the paper).
        class_source: which class map drives the spatial attention, see ``SpatialAttention``.
        attention_temperature: the spatial softmax's temperature, a number or "learned".
        detach_attention: keep the temporal loss from training the CAM head through the attention weights.
        dropout: dropout on the frame features before the frame classifier and the LSTM.
        pretrained: backbone weights: None, "imagenet" or a local ``.pth`` path.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "small",
        in_channels: int = 3,
        spatial: bool = True,
        temporal: bool = True,
        spatial_hidden: int = 1024,
        temporal_hidden: int = 512,
        class_source: str = "agnostic",
        attention_temperature: float | str = 1.0,
        detach_attention: bool = False,
        dropout: float = 0.5,
        pretrained: str | None = None,
    ) -> None:
        super().__init__()
        self.backbone, self.feature_dim = build_backbone(backbone, in_channels, pretrained)
        self.frame_classifier = nn.Linear(self.feature_dim, num_classes)
        self.spatial = SpatialAttention(
            self.feature_dim, num_classes, spatial_hidden, class_source, attention_temperature, detach_attention,
            enabled=spatial,
        )
        self.temporal = TemporalAttention(self.feature_dim, num_classes, temporal_hidden, enabled=temporal)
        self.dropout = nn.Dropout(dropout)

    def forward(self, clips: Tensor, labels: Tensor | None = None) -> StreamOutput:
        """Classify ``clips`` (B, T, C, H, W); ``labels`` (B,) drive class_source "label" in training."""
        b, t = clips.shape[:2]
        feature_maps = self.backbone(clips.flatten(0, 1))  # (B*T, D, h, w)
        frame_labels = None if labels is None else labels.repeat_interleave(t)  # (B*T,)

        averaged = feature_maps.mean(dim=(2, 3))  # (B*T, D)
        frame_logits = self.frame_classifier(self.dropout(averaged))  # (B*T, K)

        attended, cam_logits, spatial_attention = self.spatial(feature_maps, frame_labels)
        features = attended.view(b, t, -1)  # (B, T, D)
        logits, step_logits, temporal_attention = self.temporal(self.dropout(features))

        return StreamOutput(
            logits=logits,  # (B, K)
            frame_logits=frame_logits.view(b, t, -1),  # (B, T, K)
            cam_logits=None if cam_logits is None else cam_logits.view(b, t, -1),  # (B, T, K)
            step_logits=step_logits,  # (B, T, K)
            spatial_attention=spatial_attention.view(b, t, *spatial_attention.shape[1:]),  # (B, T, h, w)
            temporal_attention=temporal_attention,  # (B, T)
            features=features,  # (B, T, D)
        )

    def parts(self) -> dict[str, nn.Module]:
        """The network by part, for freezing and unfreezing parts stage by stage."""
        return {
            "backbone": self.backbone,
            "spatial": self.spatial,
            "temporal": self.temporal,
            "frame_classifier": self.frame_classifier,
        }


def stream_loss(
    output: StreamOutput,
    labels: Tensor,
    frame_weight: float = 1.0,
    cam_weight: float = 1.0,
    temporal_weight: float = 1.0,
    criterion: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
) -> Tensor:
    """Weighted sum of the three losses of one stream, for ``labels`` (B,) (or (B, K) targets of ``criterion``).

    * frame: ``criterion`` (cross-entropy) of the plain frame classifier, averaged over frames;
    * cam: that of the CAM head, averaged over frames (skipped when
      spatial attention is off);
    * temporal: that of the video-level logits plus that of the
      per-step logits averaged over steps.
    """
    frame_labels = labels.repeat_interleave(output.frame_logits.shape[1], dim=0)  # (B*T,) or (B*T, K)
    loss = frame_weight * criterion(output.frame_logits.flatten(0, 1), frame_labels)
    if output.cam_logits is not None:
        loss = loss + cam_weight * criterion(output.cam_logits.flatten(0, 1), frame_labels)
    temporal = criterion(output.logits, labels) + criterion(
        output.step_logits.flatten(0, 1), frame_labels
    )
    return loss + temporal_weight * temporal
