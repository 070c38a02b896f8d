"""Tests of tclsta.models: shapes, attention weights, ablations, weights loading, training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from tclsta.models import (
    AttentionStream,
    SpatialAttention,
    TemporalAttention,
    build_backbone,
    cross_modality_weight,
    stream_loss,
)
from tclsta.models.attention import attention_entropy
from tclsta.pretrained import WeightsError

NUM_CLASSES = 5
SMALL = dict(backbone="small", spatial_hidden=32, temporal_hidden=32)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("in_channels", [3, 10])
def test_stream_output_shapes(in_channels: int) -> None:
    model = AttentionStream(NUM_CLASSES, in_channels=in_channels, **SMALL)
    clips = torch.randn(2, 4, in_channels, 96, 128)
    out = model(clips, torch.tensor([0, 3]))
    assert out.logits.shape == (2, NUM_CLASSES)
    assert out.frame_logits.shape == (2, 4, NUM_CLASSES)
    assert out.cam_logits.shape == (2, 4, NUM_CLASSES)
    assert out.step_logits.shape == (2, 4, NUM_CLASSES)
    assert out.spatial_attention.shape == (2, 4, 6, 8)
    assert out.temporal_attention.shape == (2, 4)
    assert out.features.shape == (2, 4, model.feature_dim)
    assert stream_loss(out, torch.tensor([0, 3])).ndim == 0


@pytest.mark.parametrize(("name", "channels"), [("small", 128), ("resnet18", 512), ("resnet50", 2048)])
def test_backbone_feature_maps(name: str, channels: int) -> None:
    backbone, out_channels = build_backbone(name, in_channels=10)
    assert out_channels == channels
    assert backbone(torch.randn(1, 10, 64, 64)).shape[:2] == (1, channels)


def test_unknown_backbone_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        build_backbone("vgg", 3)


def test_attention_weights_sum_to_one() -> None:
    model = AttentionStream(NUM_CLASSES, **SMALL).eval()
    out = model(torch.randn(2, 4, 3, 96, 128))
    spatial = out.spatial_attention.flatten(2)
    assert (spatial >= 0).all() and (out.temporal_attention >= 0).all()
    torch.testing.assert_close(spatial.sum(-1), torch.ones(2, 4))
    torch.testing.assert_close(out.temporal_attention.sum(-1), torch.ones(2))
    assert not torch.allclose(spatial, torch.full_like(spatial, 1 / 48))
    assert not torch.allclose(out.temporal_attention, torch.full((2, 4), 0.25))


def test_ablations_give_uniform_attention() -> None:
    model = AttentionStream(NUM_CLASSES, spatial=False, temporal=False, **SMALL).eval()
    clips = torch.randn(2, 4, 3, 96, 128)
    out = model(clips)
    torch.testing.assert_close(out.spatial_attention, torch.full((2, 4, 6, 8), 1 / 48))
    torch.testing.assert_close(out.temporal_attention, torch.full((2, 4), 0.25))
    assert out.cam_logits is None
    assert list(model.parts()["spatial"].parameters()) == []
    averaged = model.backbone(clips.flatten(0, 1)).mean(dim=(2, 3)).view(2, 4, -1)
    torch.testing.assert_close(out.features, averaged)
    loss_without_cam = stream_loss(out, torch.tensor([1, 2]))
    assert torch.isfinite(loss_without_cam)


def test_parts_cover_the_model_once() -> None:
    model = AttentionStream(NUM_CLASSES, **SMALL)
    parts = model.parts()
    assert set(parts) == {"backbone", "spatial", "temporal", "frame_classifier"}
    grouped = [id(p) for part in parts.values() for p in part.parameters()]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())


def test_cross_modality_weight_repeats_the_rgb_mean() -> None:
    rgb = torch.randn(64, 3, 7, 7)
    flow = cross_modality_weight(rgb, 10)
    assert flow.shape == (64, 10, 7, 7)
    for channel in range(10):
        torch.testing.assert_close(flow[:, channel], rgb.mean(dim=1))


def test_local_rgb_weights_load_with_cross_modality(tmp_path: Path) -> None:
    reference = resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)

    rgb, _ = build_backbone("resnet18", 3, pretrained=str(path))
    for key, value in rgb.state_dict().items():
        torch.testing.assert_close(value, reference.state_dict()[key])

    flow, _ = build_backbone("resnet18", 10, pretrained=str(path))
    assert flow.conv1.weight.shape == (64, 10, 7, 7)
    torch.testing.assert_close(flow.conv1.weight, cross_modality_weight(reference.conv1.weight, 10))
    torch.testing.assert_close(flow.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_local_motion_weights_load_as_saved(tmp_path: Path) -> None:
    trained, _ = build_backbone("small", 10)
    path = tmp_path / "motion.pth"
    torch.save(trained.state_dict(), path)
    loaded, _ = build_backbone("small", 10, pretrained=str(path))
    for key, value in loaded.state_dict().items():
        torch.testing.assert_close(value, trained.state_dict()[key])


def test_missing_local_weights_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="missing.pth: model.pretrained names this file, which does not exist"):
        build_backbone("resnet18", 3, pretrained=str(tmp_path / "missing.pth"))


def test_small_backbone_has_no_imagenet_weights() -> None:
    with pytest.raises(WeightsError, match="no ImageNet weights"):
        build_backbone("small", 3, pretrained="imagenet")


def test_label_class_source_attends_with_the_label_map() -> None:
    head = SpatialAttention(16, NUM_CLASSES, hidden=8, class_source="label")
    features = torch.randn(3, 16, 4, 5)
    labels = torch.tensor([4, 0, 2])
    class_maps = head.cam(features)  # (3, K, 4, 5)

    _, _, attention = head.train()(features, labels)
    expected = class_maps[torch.arange(3), labels].flatten(1).softmax(1).view(3, 4, 5)
    torch.testing.assert_close(attention, expected)

    _, cam_logits, attention = head.eval()(features)
    predicted = cam_logits.argmax(1)
    expected = class_maps[torch.arange(3), predicted].flatten(1).softmax(1).view(3, 4, 5)
    torch.testing.assert_close(attention, expected)

    with pytest.raises(ValueError, match="needs labels"):
        head.train()(features)


def test_agnostic_class_source_uses_the_mean_map() -> None:
    head = SpatialAttention(16, NUM_CLASSES, hidden=8, class_source="agnostic")
    features = torch.randn(3, 16, 4, 5)
    pooled, _, attention = head(features)
    expected = head.cam(features).mean(1).flatten(1).softmax(1).view(3, 4, 5)
    torch.testing.assert_close(attention, expected)
    torch.testing.assert_close(pooled, (features * expected[:, None]).sum(dim=(2, 3)))


def test_soft_class_source_weights_the_maps_by_the_class_probabilities() -> None:
    head = SpatialAttention(16, NUM_CLASSES, hidden=8, class_source="soft")
    features = torch.randn(3, 16, 4, 5)
    pooled, cam_logits, attention = head(features)
    class_maps = head.cam(features)  # (3, K, 4, 5)
    mixed = (class_maps * cam_logits.softmax(1)[:, :, None, None]).sum(1)  # (3, 4, 5)
    assert attention.shape == (3, 4, 5) and pooled.shape == (3, 16)
    torch.testing.assert_close(attention, mixed.flatten(1).softmax(1).view(3, 4, 5))


@pytest.mark.parametrize("temperature", [0.25, 4.0])
def test_temperature_sharpens_or_flattens_the_attention(temperature: float) -> None:
    features = torch.randn(3, 16, 4, 5)
    plain = SpatialAttention(16, NUM_CLASSES, hidden=8, class_source="agnostic")
    tempered = SpatialAttention(16, NUM_CLASSES, hidden=8, class_source="agnostic", temperature=temperature)
    tempered.load_state_dict(plain.state_dict())
    scores = plain.cam(features).mean(1).flatten(1)  # (3, 20)
    attention = tempered(features)[2]
    torch.testing.assert_close(attention, (scores / temperature).softmax(1).view(3, 4, 5))
    assert (attention_entropy(attention) < attention_entropy(plain(features)[2])) == (temperature < 1)
    with pytest.raises(ValueError, match="temperature"):
        SpatialAttention(16, NUM_CLASSES, temperature=0)


def test_learned_temperature_gets_a_gradient_and_detach_stops_the_pooled_loss() -> None:
    features = torch.randn(3, 16, 4, 5, requires_grad=True)  # as the backbone's are
    learned = SpatialAttention(16, NUM_CLASSES, hidden=8, class_source="soft", temperature="learned")
    assert learned.temperature.item() == 1.0
    learned(features)[0].pow(2).sum().backward()  # a loss on the pooled features only, like the temporal head's
    assert learned.log_temperature.grad.abs() > 0 and learned.cam[0].weight.grad.abs().sum() > 0

    detached = SpatialAttention(16, NUM_CLASSES, hidden=8, class_source="soft", detach=True)
    pooled, cam_logits, attention = detached(features)
    assert attention.requires_grad  # the attention maps themselves keep their graph (for the report, for the CAM)
    pooled.pow(2).sum().backward()
    assert detached.cam[0].weight.grad is None  # the pooled feature's loss never reaches the CAM head
    cam_logits.sum().backward()
    assert detached.cam[0].weight.grad.abs().sum() > 0  # its own loss does


def test_attention_entropy_is_one_for_uniform_and_zero_for_one_position() -> None:
    uniform = torch.full((2, 3, 4, 5), 1 / 20)
    peaked = torch.zeros(2, 3, 4, 5)
    peaked[..., 1, 2] = 1
    assert attention_entropy(uniform).item() == pytest.approx(1.0)
    assert attention_entropy(peaked).item() == pytest.approx(0.0, abs=1e-6)


def test_temporal_video_logits_are_the_attended_step_logits() -> None:
    head = TemporalAttention(16, NUM_CLASSES, hidden=8)
    logits, step_logits, beta = head(torch.randn(2, 6, 16))
    torch.testing.assert_close(logits, torch.einsum("btk,bt->bk", step_logits, beta))


def test_training_steps_reduce_stream_loss() -> None:
    model = AttentionStream(NUM_CLASSES, dropout=0.0, class_source="label", **SMALL).train()
    clips = torch.randn(4, 3, 3, 48, 64)
    labels = torch.tensor([0, 1, 2, 3])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        loss = stream_loss(model(clips, labels), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
