"""Name -> builder registry for the networks ``fer-train`` can train."""

from __future__ import annotations

import re
from collections.abc import Callable

from torch import nn

Builder = Callable[..., nn.Module]
_BUILDERS: dict[str, Builder] = {}
_PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match[str], int], nn.Module]]] = []


def register(name: str) -> Callable[[Builder], Builder]:
    """Decorator: make ``builder(num_classes)`` available as ``name``."""

    def add(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"architecture {name!r} is registered twice")
        _BUILDERS[name] = builder
        return builder

    return add


def register_pattern(pattern: str, builder: Callable[[re.Match[str], int], nn.Module]) -> None:
    """Make a family of names (a regular expression) available, e.g. ``B16_N8_FC2_K5_AP20``."""
    _PATTERNS.append((re.compile(pattern), builder))


# Names people know torchvision's networks by; each stands for the variant built here.
ALIASES = {"vgg16": "vgg16_bn", "efficientnet_v2": "efficientnet_v2_s"}


def canonical_name(name: str) -> str:
    return ALIASES.get(name, name)


DEFAULT_LR = 0.05
# The resblock grid's deep stacks at full 48 px resolution diverge at 0.05: B32_N8_FC3_K5_AP20 on 700 FER2013
# faces (batch 64) went to a loss of 854 in its first epoch and NaN in its second; at 0.01 it fell to 1.93 in three.
FAMILY_LR = ((re.compile(r"B(16|32)_N\d+_FC\d+_K\d_AP\d+"), 0.01),)


def default_lr(name: str) -> float:
    """The peak learning rate ``fer-train train`` uses for ``name`` when --lr is not given."""
    return next((lr for pattern, lr in FAMILY_LR if pattern.fullmatch(name)), DEFAULT_LR)


def list_models() -> list[str]:
    return sorted(_BUILDERS)


def create_model(name: str, num_classes: int) -> nn.Module:
    """Build architecture ``name`` (or an alias of one) for one-channel input with ``num_classes`` outputs."""
    name = canonical_name(name)
    if name in _BUILDERS:
        return _BUILDERS[name](num_classes)
    for pattern, builder in _PATTERNS:
        match = pattern.fullmatch(name)
        if match:
            return builder(match, num_classes)
    known = ", ".join(list_models())
    raise KeyError(f"unknown architecture {name!r}; known: {known}, or a resblock name like B16_N8_FC2_K5_AP20")


def describe(name: str, num_classes: int = 7, width: int = 80) -> tuple[int, str]:
    """Parameters (for ``num_classes`` outputs) and the start of the builder's description, at most ``width``
    characters (a family's member: its name spelled out)."""
    model = create_model(name, num_classes)
    params = sum(p.numel() for p in model.parameters())
    builder = _BUILDERS.get(canonical_name(name))
    if builder is None:
        match = next(m for m in (pattern.fullmatch(name) for pattern, _ in _PATTERNS) if m)
        channels, blocks, fcs, kernel, pooled = match.groups()
        return params, (f"{blocks} residual blocks of {channels} channels, {kernel}x{kernel} kernels, pooled to "
                        f"{pooled}x{pooled}, {fcs} fully connected")
    text = " ".join((builder.__doc__ or "").split()).split(". ")[0].rstrip(".")
    return params, text if len(text) <= width else text[:width].rsplit(" ", 1)[0] + " ..."
