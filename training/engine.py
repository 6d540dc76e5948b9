"""train_one_epoch and evaluate as plain functions, over in-memory uint8 tensors."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from fer_emotion.training.augment import (
    AugmentConfig, augment, draw_device, mix, normalize, pick_faces, relight, uniform,
)
from fer_emotion.training.datasets import SplitData


@dataclass(frozen=True)
class LossConfig:
    label_smoothing: float = 0.0
    class_weights: torch.Tensor | None = None
    mixup: float = 0.0  # Beta(alpha, alpha); 0 turns mixing off
    cutmix: bool = False
    mix_prob: float = 0.5
    sam: float = 0.0  # sharpness-aware radius for each step's gradient; 0 takes plain steps


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor, cfg: LossConfig) -> torch.Tensor:
    classes = logits.shape[1]
    if cfg.label_smoothing:
        target = target * (1 - cfg.label_smoothing) + cfg.label_smoothing / classes
    per_class = -target * F.log_softmax(logits, dim=1)
    if cfg.class_weights is not None:
        per_class = per_class * cfg.class_weights.to(per_class.device)
    return per_class.sum(1).mean()


@contextmanager
def frozen_norm_stats(model: nn.Module):
    """BatchNorm layers normalise with the batch as usual; their running statistics are put back afterwards."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [{name: b.clone() for name, b in m.named_buffers(recurse=False)} for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, buffers in zip(norms, saved):
                for name, b in m.named_buffers(recurse=False):
                    b.copy_(buffers[name])


def sharpness_aware_grads(model: nn.Module, forward_loss, rho: float) -> None:
    """Replace the gradients in ``model`` with those at the worst nearby weights (SAM, Foret et al. 2021).

    The weights move by ``rho`` along the current gradient's direction, ``forward_loss()`` is back-propagated
    there, and the weights move back; the optimiser then steps from the original weights with the new gradients.
    """
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
    scale = rho / (norm + 1e-12)
    steps = []
    with torch.no_grad():
        for p in params:
            step = p.grad * scale
            p.add_(step)
            steps.append(step)
            p.grad = None
    with frozen_norm_stats(model):
        forward_loss().backward()
    with torch.no_grad():
        for p, step in zip(params, steps):
            p.sub_(step)


HOST_READS_EVERY = 50  # steps a GPU runs ahead between the host's looks at the loss (each look waits for it)


class TrainingDiverged(ArithmeticError):
    """The loss stopped being a finite number: the learning rate is too high for this network and data."""


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Training steps an epoch of ``n`` faces takes: whole batches only, but the ragged one when it is all there
    is (BatchNorm needs two faces a batch)."""
    return n // batch_size or (1 if n >= 2 else 0)


def batches(n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None, rank: int = 0, world: int = 1):
    order = torch.randperm(n, generator=generator, device=draw_device(generator, torch.device("cpu"))) if shuffle \
        else torch.arange(n)
    order = order[rank::world]
    # training drops the ragged last batch (a step on a few faces is a noisy one), unless it is the only one
    stop = steps_per_epoch(len(order), batch_size) * batch_size if shuffle else len(order)
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


def train_one_epoch(
    model: nn.Module, data: SplitData, optimizer, scheduler, epoch: int, *, batch_size: int, mean: float, std: float,
    augment_cfg: AugmentConfig, loss_cfg: LossConfig, generator: torch.Generator, ema=None, rank: int = 0,
    world: int = 1, device: torch.device = torch.device("cpu"), progress: bool = True, amp: bool = False,
    teacher=None, distill: float = 0.0,
) -> dict[str, float]:
    """One pass over ``data``. ``teacher(x, mean, std)``, when given, scores each batch as the student sees it
    (augmented and mixed); its probabilities make up ``distill`` of every target.

    ``data`` and ``generator`` may live on ``device``: a GPU then draws, augments and trains without waiting for the
    host, which reads the running loss and accuracy only every ``HOST_READS_EVERY`` steps (every step on a CPU).
    """
    model.train()
    num_classes = int(data.labels.max()) + 1 if data.soft is None else data.soft.shape[1]
    total_loss = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    finite = torch.ones((), dtype=torch.bool, device=device)
    seen, started = 0, time.perf_counter()
    read_every = 1 if device.type == "cpu" else HOST_READS_EVERY
    steps = list(batches(len(data), batch_size, True, generator, rank, world))
    bar = tqdm(steps, desc=f"epoch {epoch}", leave=False, disable=not progress, mininterval=1.0, dynamic_ncols=True)
    for step, index in enumerate(bar, start=1):
        reframed = data.reframed[index] if data.reframed is not None else None
        faces = pick_faces(data.images[index], reframed, augment_cfg.reframe, generator)
        x = augment(normalize(relight(faces, augment_cfg, generator), mean, std), augment_cfg, generator)
        hard = data.labels[index]
        target = data.soft[index] if data.soft is not None else F.one_hot(hard, num_classes).float()
        if loss_cfg.mixup and float(uniform((1,), generator, x.device)) < loss_cfg.mix_prob:
            x, target = mix(x, target, loss_cfg.mixup, loss_cfg.cutmix, generator)
        if teacher is not None:
            target = (1 - distill) * target + distill * teacher(x, mean, std).to(target.device)
        x, target, hard = (t.to(device, non_blocking=True) for t in (x, target, hard))
        x = x.contiguous(memory_format=torch.channels_last)

        def forward_loss(x=x, target=target):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(x)
            return logits, soft_cross_entropy(logits.float(), target, loss_cfg)

        logits, loss = forward_loss()
        finite &= torch.isfinite(loss.detach())
        if (step % read_every == 0 or step == len(steps)) and not bool(finite):
            where = f"step {step}" if read_every == 1 else f"by step {step}"
            raise TrainingDiverged(f"epoch {epoch}, {where}: the loss is {float(loss.detach())}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if loss_cfg.sam:
            sharpness_aware_grads(model, lambda: forward_loss()[1], loss_cfg.sam)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        total_loss += loss.detach() * len(index)
        correct += (logits.detach().argmax(1) == hard).sum()
        seen += len(index)
        if progress and step % read_every == 0:
            bar.set_postfix(loss=f"{float(total_loss) / seen:.3f}", acc=f"{int(correct) / seen:.3f}")
    return {"train_loss": float(total_loss) / max(seen, 1), "train_acc": int(correct) / max(seen, 1),
            "epoch_s": time.perf_counter() - started}


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, *, mean: float, std: float, tta_flip: bool = False,
            batch_size: int = 512, device: torch.device = torch.device("cpu")) -> np.ndarray:
    """Class probabilities (N, C) for uint8 faces (N, S, S)."""
    model.eval()
    outputs = []
    for index in batches(len(images), batch_size, False, None):
        x = normalize(images[index], mean, std).to(device).contiguous(memory_format=torch.channels_last)
        probs = F.softmax(model(x), dim=1)
        if tta_flip:
            probs = (probs + F.softmax(model(torch.flip(x, dims=[3])), dim=1)) / 2
        outputs.append(probs.float().cpu())
    return torch.cat(outputs).numpy() if outputs else np.empty((0, 0), np.float32)


def evaluate(model: nn.Module, data: SplitData, *, mean: float, std: float, tta_flip: bool = False,
             device: torch.device = torch.device("cpu")) -> dict[str, float]:
    probs = predict(model, data.images, mean=mean, std=std, tta_flip=tta_flip, device=device)
    labels = data.labels.numpy()
    nll = float(-np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-8, 1)).mean()) if len(labels) else 0.0
    return {"val_loss": nll, "val_acc": float((probs.argmax(1) == labels).mean()) if len(labels) else 0.0}
