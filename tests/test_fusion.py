"""Learned fusion on complementary streams beats either stream and the weights make sense."""

import torch

from tclsta.config import FusionConfig
from tclsta.evaluate import classification_metrics
from tclsta.fusion import late_fusion, learn_fusion


def complementary_logits(n: int = 200, seed: int = 0):
    """Classes 0-1 are seen only by 'rgb', 2-3 only by 'flow' (the demo's design)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    rgb = torch.randn(n, 4, generator=g) * 0.3
    flow = torch.randn(n, 4, generator=g) * 0.3
    for i, y in enumerate(labels.tolist()):
        if y < 2:
            rgb[i, y] += 4.0
            flow[i, :2] += 2.0  # flow knows the kind, not the class
        else:
            flow[i, y] += 4.0
            rgb[i, 2:] += 2.0
    return rgb, flow, labels


def test_learned_fusion_beats_both_streams():
    rgb, flow, labels = complementary_logits()
    weights = learn_fusion(rgb, flow, labels, FusionConfig(steps=200))
    test_rgb, test_flow, test_labels = complementary_logits(seed=1)
    fused = classification_metrics(weights.fuse(test_rgb, test_flow), test_labels, 4)["top1"]
    alone = [classification_metrics(s, test_labels, 4)["top1"] for s in (test_rgb, test_flow)]
    assert fused > 0.95 and max(alone) < 0.85  # each stream alone tops out near 75%
    shares = weights.as_dict(["a", "b", "c", "d"])
    assert abs(shares["global"]["rgb"] + shares["global"]["flow"] - 1) < 1e-6
    for rgb_share, flow_share in zip(shares["per_class"]["rgb"], shares["per_class"]["flow"]):
        assert 0 < rgb_share < 1 and abs(rgb_share + flow_share - 1) < 1e-6


def test_late_fusion_weights_flow_more():
    rgb = torch.tensor([[2.0, 0.0]])
    flow = torch.tensor([[0.0, 1.8]])
    assert late_fusion(rgb, flow, (1.0, 1.5)).argmax(1).item() == 1
    assert late_fusion(rgb, flow, (1.0, 0.5)).argmax(1).item() == 0


def test_metrics_on_known_predictions():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.5, 0.4, 0.1], [0.0, 0.1, 0.9]])
    labels = torch.tensor([0, 1, 1, 2])
    metrics = classification_metrics(scores, labels, 3)
    assert metrics["top1"] == 0.75
    assert metrics["per_class_accuracy"] == [1.0, 0.5, 1.0]
    assert abs(metrics["mean_class_accuracy"] - 2.5 / 3) < 1e-9
    assert metrics["confusion"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert metrics["top5"] == 1.0
