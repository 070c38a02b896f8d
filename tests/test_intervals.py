"""Accuracy intervals: bootstrap percentile intervals, exact (Clopper-Pearson) ones where the bootstrap collapses."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tclsta.evaluate import Bootstrap, classification_metrics


def test_all_right_or_all_wrong_gets_the_exact_interval():
    labels = torch.arange(32) % 4
    right = classification_metrics(torch.nn.functional.one_hot(labels, 4).float(), labels, 4, Bootstrap.draw(32))
    assert right["top1"] == 1.0 and right["top1_ci"] == pytest.approx([0.8911, 1.0], abs=1e-4)  # 0.025 ** (1 / 32)
    assert right["top5_ci"] == right["mean_class_accuracy_ci"] == right["top1_ci"]
    assert right["per_class_accuracy_ci"] == [pytest.approx([0.025 ** (1 / 8), 1.0])] * 4  # 8 videos per class
    wrong = classification_metrics(torch.nn.functional.one_hot((labels + 1) % 4, 4).float(), labels, 4, Bootstrap.draw(32))
    assert wrong["top1"] == 0.0 and wrong["top1_ci"] == pytest.approx([0.0, 1 - 0.8911], abs=1e-4)


def test_mixed_outcomes_keep_the_bootstrap_interval():
    labels = torch.arange(32) % 4
    predicted = torch.where(torch.arange(32) < 24, labels, (labels + 1) % 4)  # 24 of 32 right; class 0: 6 of 8
    metrics = classification_metrics(torch.nn.functional.one_hot(predicted, 4).float(), labels, 4, Bootstrap.draw(32))
    low, high = metrics["top1_ci"]
    assert low < 0.75 < high and high < 1.0
    assert all(0.0 < low < high <= 1.0 for low, high in metrics["per_class_accuracy_ci"])
    assert np.isclose(metrics["top1"], 0.75)
