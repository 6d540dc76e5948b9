"""Convolutional networks for 48x48 one-channel faces, written for this project."""

from __future__ import annotations

import re

from torch import nn

from fer_emotion.models.registry import register, register_pattern


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1, padding: int | None = None) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2 if padding is None else padding, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Residual(nn.Module):
    """x + body(x), the body being conv-BN-ReLU layers of the input's width."""

    def __init__(self, channels: int, kernel: int = 3, depth: int = 2) -> None:
        super().__init__()
        self.body = nn.Sequential(*(conv_bn_relu(channels, channels, kernel) for _ in range(depth)))

    def forward(self, x):
        return x + self.body(x)


class SqueezeExcite(nn.Module):
    """Scales each channel by a gate in (0, 1) computed from the whole map's channel means (squeeze-excitation)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x):
        return x * self.gate(x)


class Standardize(nn.Module):
    """Each image to zero mean and unit variance, so the net sees contrast rather than the camera's exposure."""

    def forward(self, x):
        centred = x - x.mean(dim=(1, 2, 3), keepdim=True)
        return centred / (centred.pow(2).mean(dim=(1, 2, 3), keepdim=True) + 1e-4).sqrt()


def _head(features: int, num_classes: int, hidden: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten(), nn.Dropout(dropout)]
    if hidden:
        layers += [nn.Linear(features, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        features = hidden
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


@register("cnn")
def cnn(num_classes: int) -> nn.Module:
    """Four conv-BN-ReLU-pool blocks (48 -> 3 px), then a fully connected layer with dropout."""
    widths = (32, 64, 128, 256)
    blocks, cin = [], 1
    for width in widths:
        blocks += [conv_bn_relu(cin, width), nn.MaxPool2d(2)]
        cin = width
    return nn.Sequential(*blocks, _head(cin * 3 * 3, num_classes, 256, 0.4))


@register("resnet9")
def resnet9(num_classes: int) -> nn.Module:
    """conv 64, conv 128 + pool, residual 128, conv 256 + pool, conv 512 + pool, residual 512, pool, linear."""
    return nn.Sequential(
        conv_bn_relu(1, 64),
        conv_bn_relu(64, 128),
        nn.MaxPool2d(2),
        Residual(128),
        conv_bn_relu(128, 256),
        nn.MaxPool2d(2),
        conv_bn_relu(256, 512),
        nn.MaxPool2d(2),
        Residual(512),
        nn.AdaptiveMaxPool2d(1),
        _head(512, num_classes, 0, 0.2),
    )


def staged_net(stages: tuple[tuple[int, ...], ...], num_classes: int, dropout: float = 0.3, stem: int = 0,
               standardize: bool = False, flat: bool = False, residual: bool = False,
               excite_from: int = 0) -> nn.Module:
    """3x3 conv-BN-ReLU layers in stages with a 2x2 max-pool between stages, global average pool, linear.

    ``stem`` > 0: a 4x4 stride-2 convolution to that many channels first, so the first stage starts at 24 px.
    ``standardize``: each image to zero mean and unit variance first. ``flat``: the last stage's 3x3 map (48 px
    faces, five stages) goes to the linear layer whole, keeping where on the face a feature was, in place of
    the global average pool. ``residual``: a layer that keeps its input's width adds its input to its output.
    ``excite_from`` > 0: squeeze-excitation after the last layer of that stage (counted from 0) and each later one.
    """
    layers: list[nn.Module] = [Standardize()] if standardize else []
    cin = 1
    if stem:
        layers.append(conv_bn_relu(1, stem, 4, stride=2, padding=1))
        cin = stem
    for index, widths in enumerate(stages):
        if index:
            layers.append(nn.MaxPool2d(2))
        for width in widths:
            layers.append(Residual(width, depth=1) if residual and width == cin else conv_bn_relu(cin, width))
            cin = width
        if excite_from and index >= excite_from:
            layers.append(SqueezeExcite(cin))
    if flat:
        return nn.Sequential(*layers, _head(cin * 3 * 3, num_classes, 0, dropout))
    layers.append(nn.AdaptiveAvgPool2d(1))
    return nn.Sequential(*layers, _head(cin, num_classes, 0, dropout))


FERNET_STAGES = ((16,), (32, 32), (64, 64), (128, 128), (256,))


@register("fernet")
def fernet(num_classes: int) -> nn.Module:
    """The shipped models' network: thin at 48 and 24 px, where convolutions are dear, wide at 6 and 3 px.

    0.59M parameters; as int8, about 0.22 ms a face in onnxruntime on one CPU thread (batch of 4).
    """
    return staged_net(FERNET_STAGES, num_classes)


@register("fernet_deep3")
def fernet_deep3(num_classes: int) -> nn.Module:
    """fernet with a second 256-channel layer at 3 px, where a layer is cheapest: 1.18M parameters in 1.14x
    fernet's int8 time a face (one thread, batch of 4; untrained int8 exports). With the fer2013 card's recipe
    (seed 1) it led fernet by 0.8-1.4 points from epoch 45 to 70, then ended level: 0.6891 on PublicTest against
    0.6874 (last-20-epoch means 0.6853 against 0.6820), 0.6860 as int8 against 0.6896. With relit faces as well
    (`--brightness 0.3 --contrast 0.3`, the fer2013_light card) it is fer2013_light.onnx: 0.6863 after the first
    phase (last 20 epochs 0.6821), 0.6957 after the second, 0.6927 as int8 (seed 2: 0.6851, 0.6877, 0.6871);
    fernet on that recipe (float / int8) 0.6877 / 0.6888 (seed 1) and 0.6865 / 0.6840 (seed 2); 1.05x fernet's
    time a face on an AVX2-only host, 1.15x on a VNNI one (trained files)."""
    return staged_net(FERNET_STAGES[:-1] + ((256, 256),), num_classes)


@register("fernet_deep3_wide")
def fernet_deep3_wide(num_classes: int) -> nn.Module:
    """fernet_deep3 with 1.5x the width from 12 px down (96 / 192 / 384 channels), where a channel is cheapest:
    2.62M parameters; a FER2013 epoch takes 1.5x fernet_deep3's (61-66 s against 41-44, two threads alone)."""
    return staged_net(((16,), (32, 32), (96, 96), (192, 192), (384, 384)), num_classes)


@register("fernet_res")
def fernet_res(num_classes: int) -> nn.Module:
    """fernet with each stage's second layer as a residual block (its input added to its output): 1.03x
    fernet's int8 time a face. Not shipped: with the fer2013 card's recipe (seed 1) 0.6907 on PublicTest against
    0.6874 (last-20-epoch means 0.6845 against 0.6820), but 0.6888 as int8 against 0.6896."""
    return staged_net(FERNET_STAGES, num_classes, residual=True)


@register("fernet_se")
def fernet_se(num_classes: int) -> nn.Module:
    """fernet with squeeze-excitation after its 6 px and 3 px stages: 1.08x fernet's int8 time a face. Not shipped:
    with the fer2013 card's recipe (seed 1) 0.6793 on PublicTest against 0.6874 (last 20 epochs 0.6747, 0.6820)."""
    return staged_net(FERNET_STAGES, num_classes, excite_from=3)


@register("fernet_res_se")
def fernet_res_se(num_classes: int) -> nn.Module:
    """fernet_res with squeeze-excitation after its 6 px and 3 px stages: 1.10x fernet's int8 time a face. Not
    shipped: with the fer2013 card's recipe (seed 1) 0.6793 on PublicTest against fernet_res's 0.6907."""
    return staged_net(FERNET_STAGES, num_classes, residual=True, excite_from=3)


@register("fernet_deep3_res")
def fernet_deep3_res(num_classes: int) -> nn.Module:
    """fernet_deep3 with each stage's second layer as a residual block (fernet_res's change): 1.16x fernet's int8
    time a face. Not shipped: with the fer2013 card's recipe (seed 1) it led fernet by 0.6-0.9 points from epoch
    60 to 80, then ended below it: 0.6832 on PublicTest against 0.6874 (last-20-epoch means 0.6801 against 0.6820)."""
    return staged_net(FERNET_STAGES[:-1] + ((256, 256),), num_classes, residual=True)


@register("fernet_std")
def fernet_std(num_classes: int) -> nn.Module:
    """fernet on each face standardised to zero mean and unit variance (lighting and contrast taken out).

    Not shipped: with the ferplus card's recipe 0.8404, 0.8483 and 0.8427 (seeds 0, 1, 2) against fernet's 0.8492,
    0.8396 and 0.8399, the same mean; with the fer2013 card's recipe (seed 1) 0.6843 against fernet's 0.6874.
    """
    return staged_net(FERNET_STAGES, num_classes, standardize=True)


@register("fernet_flat")
def fernet_flat(num_classes: int) -> nn.Module:
    """fernet with its last 3x3 map flattened into the linear layer instead of averaged: position-aware.

    Not shipped: on FER+ with the ferplus card's recipe (seed 0) it reached 0.8374 against fernet's 0.8492.
    """
    return staged_net(FERNET_STAGES, num_classes, flat=True)


@register("fernet_s2")
def fernet_s2(num_classes: int) -> nn.Module:
    """fernet with a 4x4 stride-2 stem in place of its 48 px convolution and first pool: the same widths
    from 24 px down in 0.70x fernet's int8 time a face (one thread, batch of 4; untrained int8 exports)."""
    return staged_net(((32, 32), (64, 64), (128, 128), (256,)), num_classes, stem=16)


@register("fernet_s2_wide")
def fernet_s2_wide(num_classes: int) -> nn.Module:
    """fernet_s2 with 80 / 160 / 320 channels from 12 px down: the time fernet_s2 saves, spent on width.

    0.91M parameters in 0.91x fernet's int8 time a face (one thread, batch of 4; 0.92x trained, in
    benchmarks/speed.py). Not shipped: with the fer2013 card's recipe it fits the training set more (augmented
    accuracy 0.79 against fernet's 0.72-0.74) but reached 0.680 and 0.679 on PublicTest (seeds 1, 2) against 0.687.
    On FER+ with the ferplus card's recipe: 0.8455 (0.8469 with weight decay 1e-3) against fernet's 0.8492.
    """
    return staged_net(((32, 32), (80, 80), (160, 160), (320,)), num_classes, stem=16)


@register("fernet_s2_deep")
def fernet_s2_deep(num_classes: int) -> nn.Module:
    """fernet_s2 with a third 128-channel layer at 6 px and a second 256-channel layer at 3 px: the time
    fernet_s2 saves, spent on depth where the maps are small. 1.33M parameters in 0.95x fernet's int8 time a
    face (one thread, batch of 4; untrained int8 exports). Not shipped: with the fer2013 card's recipe (seed 1)
    it fits the training set more (0.79 against fernet's 0.76) and reached 0.6804 on PublicTest against 0.6874
    (last-20-epoch means 0.6775 against 0.6820). Held to fernet's fit it does worse, not better: 0.6774 with
    weight decay 2e-3 (train 0.76), 0.6723 with erasing 0.5 (train 0.75). What it lacks is more likely the
    48 px layer its stem skips (fernet_s2_wide lost the same way) than regularisation."""
    return staged_net(((32, 32), (64, 64), (128, 128, 128), (256, 256)), num_classes, stem=16)


@register("fernet_wide")
def fernet_wide(num_classes: int) -> nn.Module:
    """fernet with twice the width from 12 px down: more accuracy for about 1.5x the time per face."""
    return staged_net(((16,), (32, 32), (96, 96), (192, 192), (384,)), num_classes)


def vgg_net(stages: tuple[tuple[int, ...], ...], hidden: tuple[int, ...], num_classes: int) -> nn.Sequential:
    """VGG-style: stages of 3x3 conv-BN-ReLU layers, each ending in a 2x2 max pool (48 px down to 3), the last
    3x3 map flattened into fully connected layers of ``hidden`` widths, each with dropout 0.5."""
    layers: list[nn.Module] = []
    cin = 1
    for widths in stages:
        for width in widths:
            layers.append(conv_bn_relu(cin, width))
            cin = width
        layers.append(nn.MaxPool2d(2))
    layers += [nn.Flatten(), nn.Dropout(0.5)]
    features = cin * 3 * 3
    for width in hidden:
        layers += [nn.Linear(features, width), nn.ReLU(inplace=True), nn.Dropout(0.5)]
        features = width
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


@register("vgg13m")
def vgg13m(num_classes: int) -> nn.Module:
    """VGG-style teacher: four stages of two 3x3 conv-BN-ReLU layers (64 to 512 channels), its 3x3x512 map into
    fully connected layers of 1536 and 1024 with dropout 0.5. 13.3M parameters, about 15x fernet_deep3's work a
    face: the size of the published single VGG models near 73% on FER2013. A teacher and ensemble member (the one in
    fer2013_ensemble.onnx took 5.1 hours on this project's CPU; tools/gpu_teacher.py trains it on a GPU), too slow
    for the app's default (int8: 2.9 ms a face, one thread)."""
    return vgg_net(((64, 64), (128, 128), (256, 256), (512, 512)), (1536, 1024), num_classes)


@register("vgg_mid")
def vgg_mid(num_classes: int) -> nn.Module:
    """vgg13m at half its width (32 to 256 channels; fully connected 1024 and 512): a quarter of its work a face,
    4.06M parameters. As the default of 2026-12-06/07 (int8 with flip TTA) it took 1.49-1.70 ms a face against
    fer2013_wide.onnx's 0.55-0.64 (one thread, batch of 4, benchmarks/speed.py); a member of fer2013_ensemble.onnx."""
    return vgg_net(((32, 32), (64, 64), (128, 128), (256, 256)), (1024, 512), num_classes)


@register("vgg_mid_wide")
def vgg_mid_wide(num_classes: int) -> nn.Module:
    """vgg_mid with 24 channels at 48 px and 1.5x its width from 12 px down (192 and 384): 6.56M parameters.
    On this project's CPU the 48 px layers take far more of the time a face than of the work, so its int8 file
    with flip TTA takes 1.18x vgg_mid's time (one thread, batch of 4, untrained int8 exports) for 1.5x its work,
    and a training step 1.37x (bfloat16 autocast, one thread). The shipped default (fer2013_vgg.onnx) since
    2026-12-07: 1.80-1.94 ms a face against vgg_mid's 1.56-1.57 in the same runs (docs/benchmarks.md)."""
    return vgg_net(((24, 24), (64, 64), (192, 192), (384, 384)), (1024, 512), num_classes)


@register("vgg_small")
def vgg_small(num_classes: int) -> nn.Module:
    """Four VGG-style stages of two 3x3 layers each (16 to 128 channels), global pooling, linear."""
    return staged_net(((16, 16), (32, 32), (64, 64), (128, 128)), num_classes)


def resblock_net(match: re.Match[str], num_classes: int) -> nn.Module:
    """The ``B{C}_N{N}_FC{F}_K{K}_AP{P}`` grid: N residual blocks of C channels, kernel K, stride 1,
    average pooling to P x P, then F fully connected layers."""
    channels, blocks, fcs, kernel, pooled = (int(g) for g in match.groups())
    layers: list[nn.Module] = [conv_bn_relu(1, channels, kernel)]
    layers += [Residual(channels, kernel) for _ in range(blocks)]
    # A fixed average pool (48 px in, P x P out) exports to ONNX, where an adaptive one with a size
    # that does not divide 48 cannot.
    stride = max(1, 48 // pooled)
    layers.append(nn.AvgPool2d(kernel_size=48 - (pooled - 1) * stride, stride=stride))
    layers.append(nn.Flatten())
    features = channels * pooled * pooled
    for _ in range(fcs - 1):
        layers += [nn.Linear(features, 256), nn.ReLU(inplace=True), nn.Dropout(0.3)]
        features = 256
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


register_pattern(r"B(16|32)_N(\d+)_FC(\d+)_K([357])_AP(\d+)", resblock_net)
RESBLOCK_GRID = [
    f"B{c}_N{n}_FC{round(n / 3)}_K{k}_AP20" for c in (16, 32) for n in (4, 8) for k in (3, 5, 7)
]
