"""Checkpoints: a plain dict of state dicts and the run's config, written atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
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


def run_checkpoint(path: Path) -> Path:
    """A run folder stands for its ``best.pt``; any other path is taken to be a checkpoint file."""
    return path / "best.pt" if path.is_dir() else path


def _read(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such checkpoint") from None
    except Exception as err:  # torch raises many kinds for a file that is not a checkpoint
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None


def _is_checkpoint(state: object) -> bool:
    return isinstance(state, dict) and "model" in state and "config" in state


def load_checkpoint(path: Path) -> dict:
    state = _read(path)
    if not _is_checkpoint(state):
        raise CheckpointError(f"{path}: not a fer-train checkpoint (no model and config)")
    return state


def initial_weights(path: Path, classes: Sequence[str]) -> dict:
    """The weights a run starts from (``fer-train train --init``): a run folder's ``best.pt`` or another fer-train
    checkpoint (its scored weights, the averaged ones when that run kept an EMA) for the same classes, or a plain
    state dict."""
    source = run_checkpoint(path)
    state = _read(source)
    if _is_checkpoint(state):
        if "classes" in state and list(state["classes"]) != list(classes):
            raise CheckpointError(f"{source}: its classes {list(state['classes'])} are not this run's {list(classes)}")
        return state["model"]
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise CheckpointError(f"{source}: neither a fer-train checkpoint nor a state dict")
    return state


def load_model_state(model: torch.nn.Module, state_dict: dict, arch: str, source: Path) -> None:
    """Load weights, saying in one line when they were made for another architecture."""
    try:
        model.load_state_dict(state_dict)
    except RuntimeError:
        raise CheckpointError(f"{source}: these weights do not fit architecture {arch!r}") from None
