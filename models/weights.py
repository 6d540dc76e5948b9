"""Starting weights: an initialisation scheme, or torchvision's ImageNet weights read from a local file.

Nothing is downloaded: the ImageNet files are looked for where torch keeps them (``torch.hub.get_dir()``, e.g.
``~/.cache/torch/hub/checkpoints``) or at a path given, and a missing file is a clear error naming it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)
INIT_SCHEMES = ("default", "xavier", "kaiming")


class PretrainedError(ValueError):
    """ImageNet weights that are not on this machine, or that belong to no architecture here."""


def initialise(model: nn.Module, scheme: str) -> None:
    """Re-draw every convolution's and linear layer's weights: ``xavier`` (Glorot uniform) or ``kaiming``
    (He normal, fan out, for ReLU); biases to zero, norms to the identity. ``default`` keeps PyTorch's."""
    if scheme == "default":
        return
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            if scheme == "xavier":
                nn.init.xavier_uniform_(module.weight)
            else:
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm) and module.affine:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def imagenet_file(arch: str) -> str:
    """The file name torchvision gives the ImageNet weights of ``arch``."""
    import torchvision.models as tv

    weights = {"resnet18": tv.ResNet18_Weights, "vgg16_bn": tv.VGG16_BN_Weights,
               "efficientnet_v2_s": tv.EfficientNet_V2_S_Weights}.get(arch)
    if weights is None:
        raise PretrainedError(f"--pretrained is for resnet18, vgg16_bn and efficientnet_v2_s, not {arch}")
    return weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]


def load_imagenet(model: nn.Module, arch: str, path: Path | None = None) -> tuple[int, list[str]]:
    """Copy torchvision's ImageNet weights into ``model`` wherever they fit: colour filters of the first layer
    are summed into one gray channel; layers this adaptation changed (a smaller stem, the new head) keep their own.
    Returns the tensors loaded and the names kept."""
    name = imagenet_file(arch)
    source = path or Path(torch.hub.get_dir()) / "checkpoints" / name
    if not source.is_file():
        raise PretrainedError(f"no ImageNet weights for {arch} at {source}: this program downloads nothing; copy "
                              f"torchvision's {name} there, or pass --pretrained PATH")
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for a file that is not a state dict
        raise PretrainedError(f"{source}: not a readable state dict ({type(err).__name__})") from None
    own = model.state_dict()
    fitted, kept = {}, []
    for key, value in state.items():
        target = own.get(key)
        if target is None:
            kept.append(key)
        elif value.shape == target.shape:
            fitted[key] = value
        elif value.ndim == 4 and value.shape[1] == 3 and target.shape[1] == 1 and value.shape[2:] == target.shape[2:] \
                and value.shape[0] == target.shape[0]:
            fitted[key] = value.sum(1, keepdim=True)  # a gray face seen as three equal colour channels
        else:
            kept.append(key)
    if not fitted:
        raise PretrainedError(f"{source}: none of its tensors fit {arch}")
    model.load_state_dict(fitted, strict=False)
    log.info("loaded %d of %d ImageNet tensors from %s; kept this network's own %s", len(fitted), len(state),
             source, ", ".join(sorted({k.rsplit(".", 1)[0] for k in kept})) or "none")
    return len(fitted), kept
