"""Learned fusion on complementary streams beats either stream and the weights make sense."""

import numpy as np
import torch

from tclsta.config import FusionConfig
from tclsta.evaluate import Bootstrap, classification_metrics, excludes_zero, interval
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


def _scores_with_accuracy(labels: torch.Tensor, correct: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Logits that predict the label where ``correct`` is true and the next class elsewhere."""
    predicted = torch.where(correct, labels, (labels + 1) % num_classes)
    return torch.nn.functional.one_hot(predicted, num_classes).float()


def test_bootstrap_intervals_are_seeded_and_as_wide_as_the_binomial():
    labels = torch.arange(400) % 8
    correct = torch.arange(400) % 5 != 0  # 80% right, 400 videos
    scores = _scores_with_accuracy(labels, correct, 8)
    first = classification_metrics(scores, labels, 8, Bootstrap.draw(400))
    assert first == classification_metrics(scores, labels, 8, Bootstrap.draw(400))  # same seed, same intervals
    low, high = first["top1_ci"]
    assert low < 0.8 < high and 0.03 < (high - low) / 2 < 0.05  # binomial: 1.96 * sqrt(0.8 * 0.2 / 400) = 0.039
    assert first["mean_class_accuracy_ci"][0] < first["mean_class_accuracy"] < first["mean_class_accuracy_ci"][1]
    assert all(lo <= acc <= hi for acc, (lo, hi) in zip(first["per_class_accuracy"], first["per_class_accuracy_ci"]))
    perfect = classification_metrics(_scores_with_accuracy(labels, labels >= 0, 8), labels, 8, Bootstrap.draw(400))
    # every resample is perfect: the exact (Clopper-Pearson) interval instead of the collapsed [1, 1] (tests/test_intervals.py)
    assert perfect["top1_ci"] == perfect["top5_ci"] == [0.025 ** (1 / 400), 1.0]
    assert "top1_ci" not in classification_metrics(scores, labels, 8)  # intervals only when asked


def test_paired_interval_tells_a_consistent_gain_from_noise():
    labels = np.arange(400) % 8
    bootstrap = Bootstrap.draw(400)
    base = (np.arange(400) % 5 != 0).astype(float)  # 80%
    better = base.copy()
    better[np.flatnonzero(base == 0)[:20]] = 1  # right on 20 more videos (+5 points), wrong on none that base got
    base_samples = bootstrap.accuracy_samples(base, labels, 8)["accuracy"]
    better_samples = bootstrap.accuracy_samples(better, labels, 8)["accuracy"]
    assert interval(base_samples)[1] > interval(better_samples)[0]  # the two intervals overlap...
    assert excludes_zero(interval(better_samples - base_samples))  # ...but the paired difference is clearly positive
    assert interval(base_samples - base_samples) == [0.0, 0.0] and not excludes_zero([0.0, 0.0])
    shuffled = np.random.default_rng(1).permutation(base)  # same accuracy, different videos right
    assert not excludes_zero(interval(bootstrap.accuracy_samples(shuffled, labels, 8)["accuracy"] - base_samples))


def test_per_class_weights_lean_to_the_stream_that_is_reliable_where_the_other_is_confidently_wrong():
    """The benchmark's fusion need: appearance class 2+i drifts like motion class i, so flow, trained to confidence,
    names either of the pair at random; RGB names the appearance classes right and cannot tell the motion classes apart."""
    g = torch.Generator().manual_seed(0)
    n = 400
    labels = torch.arange(n) % 4
    rgb = torch.randn(n, 4, generator=g) * 0.3
    flow = torch.randn(n, 4, generator=g) * 0.3
    coin = torch.rand(n, generator=g) < 0.5
    for i, y in enumerate(labels.tolist()):
        motion = y % 2  # the motion class of the pair
        flow[i, motion if coin[i] else motion + 2] += 6.0  # confident, right or wrong
        if y >= 2:
            rgb[i, y] += 3.0  # reliable, less confident
        else:
            rgb[i, :2] += 3.0  # sees "a motion class", not which
    train, test = slice(0, 200), slice(200, None)
    weights = learn_fusion(rgb[train], flow[train], labels[train], FusionConfig())
    share = weights.as_dict(["M0", "M1", "A0", "A1"])
    rgb_share = share["per_class"]["rgb"]
    assert min(rgb_share[2:]) > share["global"]["rgb"] > max(rgb_share[:2])  # appearance classes to RGB, motion to flow
    fused = classification_metrics(weights.fuse(rgb[test], flow[test]), labels[test], 4)["top1"]
    late = classification_metrics(late_fusion(rgb[test], flow[test], (1.0, 1.5)), labels[test], 4)["top1"]
    assert fused > late + 0.1, (fused, late)
