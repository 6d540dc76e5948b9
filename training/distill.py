"""Teachers for knowledge distillation: their softened probabilities become part of each training target.

A teacher is a fer-train checkpoint (a run folder means its ``best.pt``) or an ONNX model file the app loads,
an ensemble made by ``fer-train export --ensemble`` too, for the run's classes. By default each teacher scores
every clean training face once (averaged with the mirrored face) before training; with ``online`` it scores each
augmented batch as the student sees it, so the targets follow the views ("consistent teaching").

Cross-fitted teachers are runs that each left one fold of the training split out (``fer-train train --fold I/K``):
each scores only the faces it never trained on, so a face's target carries a judgement of it rather than an echo
of its label (a teacher trained on a face agrees with that face's label far more often than with a new face's).

A run keeps the targets it was taught with in its folder (``teacher_targets.pt``), so that ``--resume`` reads them
back rather than scoring every face again (minutes for an ensemble teacher on a CPU), and so that a teacher file
replaced while the run was stopped does not change the targets halfway through it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from fer_emotion.models import create_model
from fer_emotion.training.augment import normalize
from fer_emotion.training.checkpoint import CheckpointError, load_checkpoint, load_model_state, run_checkpoint
from fer_emotion.training.datasets import parse_fold
from fer_emotion.training.engine import batches

log = logging.getLogger(__name__)


class Teacher:
    """One trained model of the run's classes: softened probabilities (N, C) for normalised faces (N, 1, S, S)."""

    def __init__(self, path: Path, classes: Sequence[str], temperature: float, size: int,
                 device: torch.device = torch.device("cpu"), threads: int = 0) -> None:
        self.path, self.temperature, self.device = run_checkpoint(Path(path)), temperature, device
        self._model = self._session = None
        self.fold: tuple[int, int] | None = None  # (I, K): a run that left the I-th of K folds out
        self.data: list[str] = []  # the file names it was trained on (checkpoints only)
        if self.path.suffix == ".onnx":
            from fer_emotion.app.core.classifier import EmotionClassifier, ModelLoadError

            try:
                self._session = EmotionClassifier(self.path, "cpu" if device.type == "cpu" else "auto", threads)
            except ModelLoadError as err:
                raise CheckpointError(str(err)) from None
            info = self._session.info
            found, self.mean, self.std, teacher_size = list(info.labels), info.mean, info.std, info.input_size
        else:
            state = load_checkpoint(self.path)
            config = state["config"]
            found, self.mean, self.std = list(state["classes"]), config["mean"], config["std"]
            teacher_size = size  # checkpoints do not record it; a mismatch fails in the first batch
            self.fold = parse_fold(config["fold"]) if config.get("fold") else None
            self.data = [Path(p).name for p in config["data"]]
            self._model = create_model(config["arch"], len(found))
            load_model_state(self._model, state["model"], config["arch"], self.path)
            self._model = self._model.to(device, memory_format=torch.channels_last).eval()
        if found != list(classes):
            raise CheckpointError(f"{self.path}: the teacher's classes {found} are not this run's {list(classes)}")
        if teacher_size != size:
            raise CheckpointError(f"{self.path}: the teacher takes {teacher_size} px faces, this run's are {size} px")

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
        """``x`` normalised with ``mean`` and ``std`` (the student's); the teacher's own normalisation is put in."""
        if (mean, std) != (self.mean, self.std):
            x = (x * std + mean - self.mean) / self.std
        if self._session is not None:
            probs = torch.from_numpy(self._session.normalized(x.float().cpu().numpy()))
        else:
            logits = self._model(x.to(self.device).contiguous(memory_format=torch.channels_last))
            probs = F.softmax(logits.float(), dim=1).cpu()
        # softmax(logits / T) is proportional to softmax(logits) ** (1 / T)
        softened = probs.clamp(min=1e-12) ** (1 / self.temperature)
        return softened / softened.sum(1, keepdim=True)


class Teachers:
    """Several teachers averaged, called like one."""

    def __init__(self, teachers: Sequence[Teacher]) -> None:
        self.teachers = list(teachers)

    def __call__(self, x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
        return sum(t(x, mean, std) for t in self.teachers) / len(self.teachers)


def load_teachers(paths: Sequence[Path], classes: Sequence[str], temperature: float, size: int,
                  device: torch.device = torch.device("cpu"), threads: int = 0) -> Teachers:
    return Teachers([Teacher(p, classes, temperature, size, device, threads) for p in paths])


def teacher_probabilities(teacher: Teacher, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """One teacher's softened probabilities (N, C) on uint8 faces (N, S, S), each averaged with its mirror's."""
    out = []
    for index in batches(len(images), batch_size, False, None):
        x = normalize(images[index], teacher.mean, teacher.std)
        out.append((teacher(x, teacher.mean, teacher.std) + teacher(torch.flip(x, dims=[3]), teacher.mean,
                                                                    teacher.std)) / 2)
    return torch.cat(out)


def check_settings(weight: float, temperature: float, teachers: Sequence[Path] = ()) -> None:
    """Refuse what would otherwise stop the run only after its folder is made and its data loaded."""
    for path in teachers:
        if not run_checkpoint(path).is_file():
            what = "model file" if run_checkpoint(path).suffix == ".onnx" else "checkpoint"
            raise ValueError(f"{run_checkpoint(path)}: no such teacher {what}")
    if not 0 <= weight <= 1:
        raise ValueError(f"the distillation weight must lie in [0, 1], not {weight}")
    if temperature <= 0:
        raise ValueError(f"the distillation temperature must be positive, not {temperature}")


def cross_fitted(teachers: Teachers, data: Sequence[str]) -> int:
    """K when ``teachers`` are runs that left out folds of K (every fold at least once) of the same data, 0 when
    none left a fold out; ValueError for anything between."""
    folds = [t.fold for t in teachers.teachers]
    if all(f is None for f in folds):
        return 0
    if any(f is None for f in folds):
        plain = [str(t.path) for t in teachers.teachers if t.fold is None]
        raise ValueError(f"teachers that left out a fold (--fold) and teachers that did not cannot be mixed: "
                         f"{', '.join(plain)} trained on every face")
    counts = {k for _, k in folds}
    if len(counts) > 1:
        raise ValueError(f"the teachers left out folds of different counts: {sorted(counts)}")
    (count,) = counts
    missing = sorted(set(range(1, count + 1)) - {i for i, _ in folds})
    if missing:
        raise ValueError(f"no teacher left out fold {', '.join(f'{i}/{count}' for i in missing)}, so no teacher "
                         "can judge those faces unseen")
    names = [Path(p).name for p in data]
    for teacher in teachers.teachers:
        if teacher.data != names:
            raise ValueError(f"{teacher.path} was trained on {', '.join(teacher.data)}, not {', '.join(names)}: "
                             "its folds are not this run's")
    return count


def distilled_targets(teachers: Teachers, images: torch.Tensor, targets: torch.Tensor, weight: float,
                      folds: torch.Tensor | None = None) -> torch.Tensor:
    """``(1 - weight) * targets + weight * (the teachers' mean softened probabilities)`` on the clean faces. With
    ``folds`` (each face's fold, 1 to K), each teacher scores only the faces of the fold it left out, and a face's
    teachers are those that never saw it."""
    taught, labels = torch.zeros_like(targets), targets.argmax(1)
    judges = torch.zeros(len(targets), 1)
    for teacher in teachers.teachers:
        faces = slice(None) if folds is None else folds == teacher.fold[0]  # a view of every face, or a mask
        probs = teacher_probabilities(teacher, images[faces])
        seen = "the training labels" if folds is None else f"the labels of the {len(probs)} faces it left out"
        log.info("teacher %s agrees with %.4f of %s", teacher.path,
                 float((probs.argmax(1) == labels[faces]).float().mean()), seen)
        taught[faces] += probs
        judges[faces] += 1
    return (1 - weight) * targets + weight * taught / judges


def kept_targets(stored: Path, resuming: bool, write: bool, teachers: Teachers, images: torch.Tensor,
                 targets: torch.Tensor, weight: float, folds: torch.Tensor | None = None) -> torch.Tensor:
    """``distilled_targets``, read back from ``stored`` when ``resuming`` a run that wrote them for the same faces,
    targets and settings, else computed (and written to ``stored`` when ``write``: the main process)."""
    parts = [images, targets] + ([folds] if folds is not None else [])
    settings = repr((weight, [(str(t.path), t.temperature) for t in teachers.teachers]))
    key = hashlib.sha1(b"".join(p.numpy().tobytes() for p in parts) + settings.encode()).hexdigest()
    files = {str(t.path): file_digest(t.path) for t in teachers.teachers}
    if resuming and stored.is_file():
        try:
            saved = torch.load(stored, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - torch raises many kinds for a damaged file; it is scored again
            log.warning("%s is unreadable (%s); the teachers score the faces again", stored, type(err).__name__)
            saved = {}
        saved = saved if isinstance(saved, dict) else {}
        if saved.get("key") == key:
            for path, digest in files.items():
                if saved["teachers"].get(path) != digest:
                    log.warning("teacher %s has changed since this run began; the run keeps the targets it was "
                                "taught with before", path)
            log.info("read the teachers' targets back from %s", stored)
            return saved["targets"]
        if saved:
            log.info("%s holds targets for other faces or settings; the teachers score the faces again", stored)
    soft = distilled_targets(teachers, images, targets, weight, folds)
    if write:
        partial = stored.with_name(f"{stored.name}.{os.getpid()}.tmp")
        torch.save({"key": key, "teachers": files, "targets": soft}, partial)
        partial.replace(stored)
    return soft


def file_digest(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
