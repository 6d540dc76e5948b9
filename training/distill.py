"""Teachers' soft targets for knowledge distillation, computed once before training.

Each teacher is a fer-train checkpoint (or a run folder, meaning its ``best.pt``) for the same classes. Its
class probabilities on every training face (averaged with the mirrored face's) are softened by a temperature
and averaged over the teachers; training then mixes them into the labels' targets.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from fer_emotion.models import create_model
from fer_emotion.training.checkpoint import CheckpointError, load_checkpoint, load_model_state, run_checkpoint
from fer_emotion.training.engine import predict

log = logging.getLogger(__name__)


def teacher_probabilities(path: Path, images: torch.Tensor, classes: list[str], temperature: float,
                          device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """One teacher's softened probabilities (N, C) on uint8 faces (N, S, S)."""
    checkpoint = run_checkpoint(path)
    state = load_checkpoint(checkpoint)
    if list(state["classes"]) != list(classes):
        raise CheckpointError(f"{checkpoint}: the teacher's classes {state['classes']} are not this run's {classes}")
    config = state["config"]
    model = create_model(config["arch"], len(classes))
    load_model_state(model, state["model"], config["arch"], checkpoint)
    model = model.to(device, memory_format=torch.channels_last)
    probs = torch.from_numpy(predict(model, images, mean=config["mean"], std=config["std"], tta_flip=True,
                                     device=device))
    # softmax(logits / T) is proportional to softmax(logits) ** (1 / T)
    softened = probs.clamp(min=1e-12) ** (1 / temperature)
    return softened / softened.sum(1, keepdim=True)


def check_settings(weight: float, temperature: float, teachers: Sequence[Path] = ()) -> None:
    """Refuse what would otherwise stop the run only after its folder is made and its data loaded."""
    for path in teachers:
        if not run_checkpoint(path).is_file():
            raise ValueError(f"{run_checkpoint(path)}: no such teacher checkpoint")
    if not 0 <= weight <= 1:
        raise ValueError(f"the distillation weight must lie in [0, 1], not {weight}")
    if temperature <= 0:
        raise ValueError(f"the distillation temperature must be positive, not {temperature}")


def distilled_targets(teachers: list[Path], images: torch.Tensor, targets: torch.Tensor, classes: list[str],
                      weight: float, temperature: float, device: torch.device = torch.device("cpu")) -> torch.Tensor:
    """``(1 - weight) * targets + weight * (the teachers' mean softened probabilities)``."""
    check_settings(weight, temperature)
    taught, labels = torch.zeros_like(targets), targets.argmax(1)
    for path in teachers:
        probs = teacher_probabilities(path, images, classes, temperature, device)
        log.info("teacher %s agrees with %.4f of the training labels", run_checkpoint(path),
                 float((probs.argmax(1) == labels).float().mean()))
        taught += probs / len(teachers)
    return (1 - weight) * targets + weight * taught
