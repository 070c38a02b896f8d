"""Frame backbones of the spatial-temporal attention model.

Peng, Zhao, Zhang, "Two-stream Collaborative Learning with Spatial-Temporal
Attention for Video Classification", arXiv 1711.03273, Sec. III-A: each stream
runs an ImageNet ResNet-50 on single frames, and attention works on the feature
map of its last convolutional block. A backbone here is that network cut before
its global pooling: it maps frames (N, in_channels, H, W) to a feature map
(N, C, h, w).

The motion stream takes a stack of L optical-flow x/y pairs (2L channels). Its
first convolution is set up by cross-modality initialisation (Wang et al.,
"Temporal Segment Networks", ECCV 2016): the RGB filters are averaged over their
three input channels and the mean is repeated for each flow channel.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn
from torchvision.models import ResNet, resnet18, resnet50

from tclsta.pretrained import load_weights, resolve_pretrained

__all__ = ["SmallCNN", "ResNetTrunk", "build_backbone", "cross_modality_weight"]


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SmallCNN(nn.Module):
    """Four stride-2 conv-BN-ReLU blocks (32-64-128-128 channels, total stride 16).

    A stand-in for ResNet-50 on CPU: a 128x96 frame gives an 8x6 map, close to
    the 7x7 positions the paper attends over.
    """

    out_channels = 128

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = _conv_bn_relu(32, 64, stride=2)
        self.layer2 = _conv_bn_relu(64, 128, stride=2)
        self.layer3 = _conv_bn_relu(128, self.out_channels, stride=2)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))  # (N, 32, H/2, W/2)
        x = self.layer1(x)  # (N, 64, H/4, W/4)
        x = self.layer2(x)  # (N, 128, H/8, W/8)
        return self.layer3(x)  # (N, 128, H/16, W/16)


class ResNetTrunk(nn.Module):
    """A torchvision ResNet without its global average pooling and classifier.

    Submodules keep torchvision's names, so a torchvision state dict loads once
    its ``fc.*`` entries are dropped.
    """

    def __init__(self, resnet: ResNet) -> None:
        super().__init__()
        self.conv1 = resnet.conv1
        self.bn1 = resnet.bn1
        self.relu = resnet.relu
        self.maxpool = resnet.maxpool
        self.layer1 = resnet.layer1
        self.layer2 = resnet.layer2
        self.layer3 = resnet.layer3
        self.layer4 = resnet.layer4
        self.out_channels: int = resnet.fc.in_features

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (N, 64, H/4, W/4)
        x = self.layer1(x)  # (N, 64 or 256, H/4, W/4)
        x = self.layer2(x)  # (N, 128 or 512, H/8, W/8)
        x = self.layer3(x)  # (N, 256 or 1024, H/16, W/16)
        return self.layer4(x)  # (N, 512 or 2048, H/32, W/32)


_BUILDERS: dict[str, Callable[[], SmallCNN | ResNetTrunk]] = {
    "small": SmallCNN,
    "resnet18": lambda: ResNetTrunk(resnet18(weights=None)),
    "resnet50": lambda: ResNetTrunk(resnet50(weights=None)),
}


def cross_modality_weight(rgb_weight: Tensor, in_channels: int) -> Tensor:
    """Turn RGB conv filters (O, 3, k, k) into (O, in_channels, k, k) filters.

    Every new input channel gets the mean of the filter over the RGB channels.
    """
    return rgb_weight.mean(dim=1, keepdim=True).repeat(1, in_channels, 1, 1)


def _replace_conv1(trunk: nn.Module, in_channels: int, weight: Tensor | None = None) -> None:
    """Swap ``trunk.conv1`` for one taking ``in_channels``, set to ``weight`` or He-initialised."""
    old = trunk.conv1
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        kernel_size=old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        bias=old.bias is not None,
    )
    with torch.no_grad():
        if weight is None:
            nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
        else:
            new.weight.copy_(weight)
    trunk.conv1 = new


def build_backbone(name: str, in_channels: int, pretrained: str | None = None) -> tuple[nn.Module, int]:
    """Build a frame backbone and return it with its number of output channels C.

    Args:
        name: "small", "resnet18" or "resnet50".
        in_channels: 3 for RGB frames, 2L for a stack of L optical-flow x/y pairs.
        pretrained: None (random initialisation), "imagenet" (torchvision's file,
            read from ``resources/``: see ``tclsta.pretrained``) or the path
            of a local ``.pth`` state dict, either RGB weights
            (``fc.*`` entries are ignored) or weights saved from a backbone with
            ``in_channels`` inputs.

    RGB weights given to a backbone with ``in_channels != 3`` are transferred by
    cross-modality initialisation of conv1. Without weights there is nothing to
    transfer and conv1 is He-initialised for ``in_channels`` directly.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown backbone '{name}'; expected one of {sorted(_BUILDERS)}")
    trunk = _BUILDERS[name]()
    state = None if pretrained is None else load_weights(resolve_pretrained(name, pretrained))

    if state is None:
        if in_channels != 3:
            _replace_conv1(trunk, in_channels)
        return trunk, trunk.out_channels

    state = {key: value for key, value in state.items() if not key.startswith("fc.")}
    if state["conv1.weight"].shape[1] == in_channels:
        if in_channels != 3:
            _replace_conv1(trunk, in_channels)
        trunk.load_state_dict(state)
    else:
        trunk.load_state_dict(state)
        _replace_conv1(trunk, in_channels, cross_modality_weight(trunk.conv1.weight, in_channels))
    return trunk, trunk.out_channels
