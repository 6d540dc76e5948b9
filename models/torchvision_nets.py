"""torchvision's ImageNet networks adapted to one-channel 48x48 faces (no weights downloaded)."""

from __future__ import annotations

import torchvision
from torch import nn

from fer_emotion.models.registry import register


@register("resnet18")
def resnet18(num_classes: int) -> nn.Module:
    """torchvision's ResNet-18 with a one-channel 3x3 stem and no max-pool, for 48 px faces."""
    net = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    # A 3x3 stem without the max-pool keeps 48 px faces from shrinking to 1.5 px before the last stage.
    net.conv1 = nn.Conv2d(1, 64, 3, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


@register("vgg16_bn")
def vgg16_bn(num_classes: int) -> nn.Module:
    """torchvision's VGG-16 with batch norm, one input channel, global pooling and a 256-unit head."""
    net = torchvision.models.vgg16_bn(weights=None, num_classes=num_classes)
    net.features[0] = nn.Conv2d(1, 64, 3, padding=1)
    net.avgpool = nn.AdaptiveAvgPool2d(1)
    net.classifier = nn.Sequential(nn.Dropout(0.5), nn.Linear(512, 256), nn.ReLU(True), nn.Dropout(0.5), nn.Linear(256, num_classes))
    return net


@register("efficientnet_v2_s")
def efficientnet_v2_s(num_classes: int) -> nn.Module:
    """torchvision's EfficientNetV2-S with a one-channel stride-1 stem, for 48 px faces."""
    net = torchvision.models.efficientnet_v2_s(weights=None, num_classes=num_classes)
    first = net.features[0][0]
    net.features[0][0] = nn.Conv2d(1, first.out_channels, 3, stride=1, padding=1, bias=False)
    return net
