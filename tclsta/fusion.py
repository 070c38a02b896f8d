"""Learned fusion weights of the static and motion streams.

Fused score of class c: ``w_rgb[c] * log p_rgb(c) + w_flow[c] * log p_flow(c)``
with ``w[s, c] = softplus(g[s] + d[s, c])``: a global weight per stream ``g``
and per-class offsets ``d`` pulled towards zero by an L2 penalty (the
per-class weights of the authors' earlier work, arXiv 1703.08025). Learned by
cross-entropy on the validation videos, which are carved from the training
split; the test split is never seen. For a multi-label dataset the same weights
multiply each class's logits before its sigmoid, and are learned by binary
cross-entropy (:mod:`tclsta.multilabel`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tclsta.config import FusionConfig
from tclsta.multilabel import Objective


@dataclass(frozen=True)
class FusionWeights:
    """Per-stream, per-class weights (2, K): row 0 static (RGB), row 1 motion (flow)."""

    per_class: torch.Tensor
    global_weights: torch.Tensor  # (2,)
    objective: Objective = Objective()

    def fuse(self, rgb_logits: torch.Tensor, flow_logits: torch.Tensor) -> torch.Tensor:
        """(N, K) stream logits -> (N, K) fused scores (multi-label: fused logits)."""
        terms = self.objective.fusion_terms
        return self.per_class[0] * terms(rgb_logits) + self.per_class[1] * terms(flow_logits)

    def as_dict(self, classes: list[str]) -> dict:
        """Normalised weights (each stream's share) for reports."""
        share = self.per_class / self.per_class.sum(0, keepdim=True)
        total = self.global_weights / self.global_weights.sum()
        return {
            "global": {"rgb": float(total[0]), "flow": float(total[1])},
            "per_class": {"rgb": share[0].tolist(), "flow": share[1].tolist()},
            "classes": classes,
        }


def learn_fusion(rgb_logits: torch.Tensor, flow_logits: torch.Tensor, labels: torch.Tensor, config: FusionConfig,
                 objective: Objective = Objective()) -> FusionWeights:
    """Fit the fusion weights on held-out (validation) scores: (N, K), (N, K), (N,) labels or (N, K) targets."""
    num_classes = rgb_logits.shape[1]
    terms = torch.stack([objective.fusion_terms(rgb_logits.float()), objective.fusion_terms(flow_logits.float())])  # (2, N, K)
    global_raw = torch.zeros(2, requires_grad=True)
    offsets = torch.zeros(2, num_classes, requires_grad=True)
    optimizer = torch.optim.Adam([global_raw, offsets], lr=config.lr)
    for _ in range(config.steps):
        weights = F.softplus(global_raw[:, None] + offsets)  # (2, K)
        fused = (weights[:, None, :] * terms).sum(0)  # (N, K)
        loss = objective.loss(fused, labels) + config.per_class_penalty * offsets.pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return FusionWeights(F.softplus(global_raw[:, None] + offsets), F.softplus(global_raw), objective)


def late_fusion(rgb_logits: torch.Tensor, flow_logits: torch.Tensor, weights: tuple[float, float],
                objective: Objective = Objective()) -> torch.Tensor:
    """The field's fixed late fusion: weighted sum of softmax scores (multi-label: of each class's sigmoid;
    RGB:flow = 1:1.5 by default)."""
    return weights[0] * objective.probabilities(rgb_logits) + weights[1] * objective.probabilities(flow_logits)
