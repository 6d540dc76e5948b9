"""Checkpoints: a plain dict of state dicts and the run's config, written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that belongs to another architecture."""


def save_checkpoint(state: dict, path: Path) -> None:
    """Write ``state`` to ``path`` so that a crash at any moment leaves either the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as err:  # torch raises many kinds for a file that is not a checkpoint
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path}: not a fer-train checkpoint (no model and config)")
    return state


def load_model_state(model: torch.nn.Module, state_dict: dict, arch: str, source: Path) -> None:
    """Load weights, saying in one line when they were made for another architecture."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError:
        raise CheckpointError(f"{source}: these weights do not fit architecture {arch!r}") from None
