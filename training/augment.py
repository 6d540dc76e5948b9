"""Batched augmentation on uint8 face tensors: lighting, then one affine warp per batch, then erasing and noise.

Every random draw comes from the caller's generator, on the generator's own device, and the work is done on the
faces' device: on a GPU, a generator there keeps the whole batch pipeline off the host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    crop_pad: int = 4  # random crop after reflect padding by this many pixels (0: off)
    flip: bool = True
    rotate: float = 10.0  # degrees, uniform in +-rotate
    scale: float = 0.0  # relative zoom, uniform in +-scale
    erase: float = 0.0  # probability of erasing one random rectangle
    noise: float = 0.0  # std of Gaussian noise on the normalised input
    reframe: float = 0.0  # share of faces shown as the app's detector and crop cut them (needs SplitData.reframed)
    brightness: float = 0.0  # each face's pixels times a factor uniform in 1 +- brightness
    contrast: float = 0.0  # each face's spread about its own mean times a factor uniform in 1 +- contrast


def draw_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    """Where ``generator``'s numbers are drawn: its own device (torch refuses any other), else ``device``."""
    return generator.device if generator is not None else device


def uniform(shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform draws in [0, 1) from ``generator``, on ``device``."""
    return torch.rand(shape, generator=generator, device=draw_device(generator, device)).to(device)


def normalize(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """0-255 faces (N, H, W), uint8 or float -> float (N, 1, H, W), as app.core.crop.normalize does for the app."""
    return ((images.float() * (1.0 / 255.0) - mean) / std).unsqueeze(1)


def pick_faces(images: torch.Tensor, reframed: torch.Tensor | None, share: float,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """A batch of uint8 faces with a random ``share`` of them replaced by their reframed copies."""
    if reframed is None or not share:
        return images
    chosen = uniform((len(images),), generator, images.device) < share
    return torch.where(chosen[:, None, None], reframed, images)


def relight(faces: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Faces (N, H, W) with random contrast, then brightness, on the 0-255 scale; untouched (and no draws) when off."""
    if not (cfg.brightness or cfg.contrast):
        return faces
    n = len(faces)
    pixels = faces.float()
    if cfg.contrast:
        factor = 1.0 + (uniform((n, 1, 1), generator, faces.device) * 2 - 1) * cfg.contrast
        mean = pixels.mean((1, 2), keepdim=True)
        pixels = (pixels - mean) * factor + mean
    if cfg.brightness:
        pixels = pixels * (1.0 + (uniform((n, 1, 1), generator, faces.device) * 2 - 1) * cfg.brightness)
    return pixels.clamp(0.0, 255.0)


def augment(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Augment a normalised batch (N, 1, H, W) in one grid_sample with reflection at the borders."""
    n, _, h, w = x.shape
    rand = lambda *shape: uniform(shape, generator, x.device)  # noqa: E731
    if cfg.crop_pad or cfg.flip or cfg.rotate or cfg.scale:
        angle = (rand(n) * 2 - 1) * math.radians(cfg.rotate)
        zoom = 1.0 + (rand(n) * 2 - 1) * cfg.scale
        flip = torch.where(rand(n) < 0.5, -1.0, 1.0) if cfg.flip else torch.ones(n, device=x.device)
        # Integer-pixel shifts, as a crop from a padded image gives; grid units are 2/size.
        shift_x = _pixel_shifts(n, cfg.crop_pad, generator, x.device) * (2.0 / w)
        shift_y = _pixel_shifts(n, cfg.crop_pad, generator, x.device) * (2.0 / h)
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
        theta = torch.stack([
            torch.stack([cos * flip, -sin, shift_x], 1),
            torch.stack([sin * flip, cos, shift_y], 1),
        ], 1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if cfg.erase:
        x = _erase(x, cfg.erase, rand)
    if cfg.noise:
        noise = torch.randn(x.shape, generator=generator, device=draw_device(generator, x.device))
        x = x + noise.to(x.device) * cfg.noise
    return x


def _pixel_shifts(n: int, pad: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    drawn = torch.randint(-pad, pad + 1, (n,), generator=generator, device=draw_device(generator, device))
    return drawn.to(device)


def _erase(x: torch.Tensor, probability: float, rand) -> torch.Tensor:
    """Zero one rectangle (2-33% of the area, aspect 0.3-3.3) in a random share of the images."""
    n, _, h, w = x.shape
    area = (0.02 + rand(n) * 0.31) * h * w
    aspect = torch.exp((rand(n) * 2 - 1) * math.log(3.3))
    eh = (area * aspect).sqrt().clamp(1, h)
    ew = (area / aspect).sqrt().clamp(1, w)
    top = rand(n) * (h - eh)
    left = rand(n) * (w - ew)
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = ((rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1))
              & (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1)))
    chosen = (rand(n) < probability).view(n, 1, 1)
    return x.masked_fill((inside & chosen).unsqueeze(1), 0.0)


def mix(x: torch.Tensor, targets: torch.Tensor, alpha: float, cutmix: bool, generator=None):
    """Mixup (or CutMix) of a batch with its own permutation; targets are soft (N, C)."""
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    drawn_on = draw_device(generator, x.device)
    perm = torch.randperm(len(x), generator=generator, device=drawn_on).to(x.device)
    if cutmix:
        _, _, h, w = x.shape
        cut = math.sqrt(1 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = (int(torch.randint(size, (1,), generator=generator, device=drawn_on)) for size in (h, w))
        y1, y2 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x1, x2 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[:, :, y1:y2, x1:x2] = x[perm, :, y1:y2, x1:x2]
        lam = 1 - (y2 - y1) * (x2 - x1) / (h * w)
    else:
        x = lam * x + (1 - lam) * x[perm]
    return x, lam * targets + (1 - lam) * targets[perm]
