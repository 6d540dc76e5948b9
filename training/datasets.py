"""Turn data sources and a label scheme into in-memory tensors per split."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fer_emotion.training import labels as schemes
from fer_emotion.training.data import SPLIT_NAMES, DataError, Source, read_source, read_votes

log = logging.getLogger(__name__)


@dataclass
class SplitData:
    """One split as tensors: uint8 images (N, S, S), int64 labels, optional float soft targets (N, C), and
    optionally the same faces as the app's detector and crop cut them (``training.reframe``)."""

    images: torch.Tensor
    labels: torch.Tensor
    soft: torch.Tensor | None
    reframed: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device) -> SplitData:
        """The same split with its tensors on ``device`` (itself when they are there already)."""
        if self.images.device == device:
            return self
        moved = [None if t is None else t.to(device) for t in (self.images, self.labels, self.soft, self.reframed)]
        return SplitData(*moved)


def targets_for(source: Source, scheme: str, label_map: dict[str, str], vote_rule: str = "plurality") -> schemes.Targets:
    """``vote_rule``: which FER+ faces count and how they are labelled (``labels.VOTE_RULES``; scheme ferplus)."""
    if scheme in ("ferplus", "engagement"):
        if source.votes is None:
            raise DataError(f"scheme {scheme} needs FER+ votes: pass --ferplus PATH with {source.name}")
        rule = schemes.VOTE_RULES[vote_rule] if scheme == "ferplus" else schemes.engagement_targets
        return rule(source.votes)
    try:
        mapping = np.array(schemes.from_names(source.class_names, scheme, label_map) + [-1])
    except ValueError as err:
        raise DataError(f"{source.name}: {err}") from None
    return schemes.hard_targets(mapping[source.labels])  # -1 indexes the appended -1


def load_splits(
    data: list[Path], scheme: str, ferplus: Path | None = None, label_map: dict[str, str] | None = None,
    size: int = 48, skip_bad: bool = False, vote_rule: str = "plurality",
) -> dict[str, SplitData]:
    """Read every source, apply the scheme and return ``{"train": ..., "val": ..., "test": ...}``."""
    return split_sources(read_sources(data, ferplus, size, skip_bad), scheme, label_map, size, vote_rule)


def read_sources(data: list[Path], ferplus: Path | None = None, size: int = 48, skip_bad: bool = False) -> list[Source]:
    """Every source read once, the FER+ votes (if any) attached to the first."""
    sources = [read_source(path, size, skip_bad) for path in data]
    if ferplus is not None:
        sources[0].votes = read_votes(ferplus, len(sources[0].pixels))
    for source in sources:
        for note in source.notes:
            log.warning(note)
    return sources


def split_sources(
    sources: list[Source], scheme: str, label_map: dict[str, str] | None = None, size: int = 48,
    vote_rule: str = "plurality",
) -> dict[str, SplitData]:
    """The scheme applied to sources already read; ``vote_rule`` as in ``targets_for``."""
    parts: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]] = {0: [], 1: [], 2: []}
    for source in sources:
        if source.pixels.shape[1:] != (size, size):
            raise DataError(f"{source.name}: images are {source.pixels.shape[1:]}, the run uses {size}x{size}")
        targets = targets_for(source, scheme, label_map or {}, vote_rule)
        split = source.split[targets.keep]
        pixels = source.pixels[targets.keep]
        for index in parts:
            rows = split == index
            soft = targets.soft[rows] if targets.soft is not None else None
            parts[index].append((pixels[rows], targets.hard[rows], soft))
    return {SPLIT_NAMES[i]: _concat(chunks, len(schemes.SCHEMES[scheme])) for i, chunks in parts.items()}


def _concat(chunks, num_classes: int) -> SplitData:
    images = np.concatenate([c[0] for c in chunks])
    hard = np.concatenate([c[1] for c in chunks])
    softs = [c[2] if c[2] is not None else np.eye(num_classes, dtype=np.float32)[c[1]] for c in chunks]
    any_soft = any(c[2] is not None for c in chunks)
    return SplitData(
        torch.from_numpy(np.ascontiguousarray(images)),
        torch.from_numpy(hard),
        torch.from_numpy(np.concatenate(softs)) if any_soft else None,
    )


def subset(split: SplitData, count: int, generator: torch.Generator) -> SplitData:
    """At most ``count`` faces of ``split``, drawn by ``generator`` (all of them, in order, when it has fewer)."""
    if len(split) <= count:
        return split
    return picked(split, torch.randperm(len(split), generator=generator)[:count].sort().values)


def picked(split: SplitData, keep: torch.Tensor) -> SplitData:
    """The faces of ``split`` that ``keep`` (indices or a mask) selects."""
    pick = lambda tensor: None if tensor is None else tensor[keep]  # noqa: E731
    return SplitData(split.images[keep], split.labels[keep], pick(split.soft), pick(split.reframed))


def parse_fold(text: str) -> tuple[int, int]:
    """``"I/K"`` (the I-th of K folds, 1 <= I <= K, K >= 2) as (I, K); ValueError otherwise."""
    try:
        fold, folds = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"a fold is written I/K (the I-th of K, e.g. 1/4), not {text!r}") from None
    if folds < 2 or not 1 <= fold <= folds:
        raise ValueError(f"fold {text}: I/K needs K of 2 or more and I from 1 to K")
    return fold, folds


def fold_numbers(count: int, folds: int) -> torch.Tensor:
    """Each of ``count`` training faces' fold, 1 to ``folds``: the faces shuffled by a seed of their own (not the
    run's) and dealt out in turn, so every run on the same data agrees which faces each fold holds."""
    numbers = torch.empty(count, dtype=torch.long)
    numbers[torch.randperm(count, generator=torch.Generator().manual_seed(0))] = torch.arange(count) % folds + 1
    return numbers


def floored(soft: torch.Tensor, floor: float) -> torch.Tensor:
    """Soft targets with probabilities below ``floor`` set to zero and each row renormalised; a row with
    nothing at or above ``floor`` (votes spread evenly) is kept as it was."""
    kept = soft * (soft >= floor)
    total = kept.sum(1, keepdim=True)
    return torch.where(total > 0, kept / total.clamp_min(1e-12), soft)


def class_counts(split: SplitData, num_classes: int) -> list[int]:
    return torch.bincount(split.labels, minlength=num_classes).tolist()


def reframed(images: torch.Tensor, margin: float, level: bool, progress: bool = True) -> torch.Tensor:
    """Faces (uint8 N x S x S) as the app's detector and crop cut them (``training.reframe``), with the
    crop's ``margin``; ``level``: turned upright by the detector's eye roll, as the app turns a levelled
    model's crops."""
    from fer_emotion.training.reframe import reframe_faces

    faces, _ = reframe_faces(images.numpy(), margin, level, threads=torch.get_num_threads(), progress=progress)
    return torch.from_numpy(faces)


def level_eyes(images: torch.Tensor, min_prob: float = 0.7) -> torch.Tensor:
    """Faces (uint8 N x S x S) turned about their centres so the eyes are level, with the app's rule for
    crops (``app.core.crop.usable_roll``): MTCNN's O-Net reads the landmarks on each whole face; faces it
    doubts (probability below ``min_prob``) stay as they are."""
    from fer_emotion.app.core.crop import turn, usable_roll
    from fer_emotion.app.core.mtcnn import OnnxNets, face_rolls

    faces = images.numpy()
    rolls, probs = face_rolls(faces, OnnxNets(device="cpu"))
    turned = faces.copy()
    count = 0
    for index in np.flatnonzero(probs >= min_prob):
        roll = usable_roll(rolls[index])
        if roll:
            turned[index] = turn(faces[index], roll)
            count += 1
    log.info("eyes levelled on %d of %d faces (|roll| over 10 degrees: %d)", count, len(faces),
             int(np.sum((probs >= min_prob) & (np.abs(rolls) > 10))))
    return torch.from_numpy(turned)
