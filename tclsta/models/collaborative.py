"""Static-motion collaborative model: alternating co-attention between the two streams.

Peng, Zhao, Zhang, "Two-stream Collaborative Learning with Spatial-Temporal
Attention for Video Classification", arXiv 1711.03273, Sec. III-B ("mutual
guidance"), as reconstructed from the authors' release (``docs/PAPER.md``):

1. each stream's sequence of per-frame features (from its trained attention
   model) is embedded: linear + tanh + dropout;
2. the motion sequence attends to itself, giving a motion summary;
3. the static attention is conditioned on that motion summary;
4. the motion attention is conditioned on the attended static summary;
5. the two attended vectors are summed, passed through a hidden tanh layer and
   a classifier (cross-entropy).

Every attention is ``a_t = softmax_t(w^T tanh(W x_t + U s))`` over the T steps,
with ``s`` the guiding summary (no ``U s`` term for self-attention). With
``mutual_guidance=False`` (the ablation) each stream attends to itself only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = ["CollaborativeModel", "CollaborativeOutput", "GuidedAttention"]


class GuidedAttention(nn.Module):
    """Soft attention over the steps of a sequence, optionally guided by a summary vector.

    ``a_t = softmax_t(w^T tanh(W x_t + U s))``; the output is ``sum_t a_t x_t``.

    Args:
        dim: dimension of the sequence's steps and of the guide ``s``.
        hidden: dimension of the attention's hidden layer (rows of W and U).
        guided: whether a guide ``s`` enters the scores (False: self-attention).
    """

    def __init__(self, dim: int, hidden: int, guided: bool) -> None:
        super().__init__()
        self.project = nn.Linear(dim, hidden)  # W (with the bias)
        self.guide = nn.Linear(dim, hidden, bias=False) if guided else None  # U
        self.score = nn.Linear(hidden, 1, bias=False)  # w

    def forward(self, x: Tensor, guide: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Attend over ``x`` (B, T, dim) with ``guide`` (B, dim); returns the summary (B, dim) and weights (B, T)."""
        if (guide is None) != (self.guide is None):
            raise ValueError("a guided attention needs a guide, a self-attention takes none")
        hidden = self.project(x)  # (B, T, hidden)
        if self.guide is not None:
            hidden = hidden + self.guide(guide).unsqueeze(1)  # (B, T, hidden)
        weights = self.score(torch.tanh(hidden)).squeeze(-1).softmax(dim=1)  # (B, T)
        return torch.einsum("btd,bt->bd", x, weights), weights  # (B, dim), (B, T)


@dataclass
class CollaborativeOutput:
    """What one forward pass of a ``CollaborativeModel`` produces."""

    logits: Tensor
    """(B, K) video-level logits."""
    static_attention: Tensor
    """(B, T) final attention weights over the static (RGB) steps."""
    motion_attention: Tensor
    """(B, T) final attention weights over the motion (flow) steps."""


class CollaborativeModel(nn.Module):
    """Fuse per-frame static and motion features by alternating co-attention.

    Args:
        static_dim: dimension of a static (RGB) frame feature (2048 for ResNet-50).
        motion_dim: dimension of a motion (flow) frame feature.
        num_classes: number of classes K.
        hidden: dimension of the embeddings, the attention layers and the fusion layer.
        dropout: dropout after the embeddings and the fusion layer (0.5 in the release).
        mutual_guidance: alternate the attentions between the streams; if False,
            each stream attends to itself independently (ablation).
    """

    def __init__(
        self,
        static_dim: int,
        motion_dim: int,
        num_classes: int,
        hidden: int = 512,
        dropout: float = 0.5,
        mutual_guidance: bool = True,
    ) -> None:
        super().__init__()
        self.mutual_guidance = mutual_guidance
        self.static_embed = nn.Sequential(nn.Linear(static_dim, hidden), nn.Tanh(), nn.Dropout(dropout))
        self.motion_embed = nn.Sequential(nn.Linear(motion_dim, hidden), nn.Tanh(), nn.Dropout(dropout))
        self.motion_self_attention = GuidedAttention(hidden, hidden, guided=False)
        self.static_attention = GuidedAttention(hidden, hidden, guided=mutual_guidance)
        self.motion_attention = GuidedAttention(hidden, hidden, guided=True) if mutual_guidance else None
        self.fusion = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Dropout(dropout))
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, static: Tensor, motion: Tensor) -> CollaborativeOutput:
        """Classify videos from ``static`` (B, T, static_dim) and ``motion`` (B, T', motion_dim) features."""
        static = self.static_embed(static)  # (B, T, hidden)
        motion = self.motion_embed(motion)  # (B, T', hidden)
        motion_summary, motion_weights = self.motion_self_attention(motion)  # (B, hidden), (B, T')
        if self.motion_attention is None:
            static_summary, static_weights = self.static_attention(static)  # (B, hidden), (B, T)
        else:
            static_summary, static_weights = self.static_attention(static, motion_summary)  # (B, hidden), (B, T)
            motion_summary, motion_weights = self.motion_attention(motion, static_summary)  # (B, hidden), (B, T')
        fused = self.fusion(static_summary + motion_summary)  # (B, hidden)
        return CollaborativeOutput(self.classifier(fused), static_weights, motion_weights)  # logits (B, K)
