"""Data readers: the Kaggle FER2013 CSV, the FER+ vote file, image folders, and a fast .npz copy.

Every reader returns a ``Source``: uint8 faces of one size in memory, a split per row and labels,
so that training never touches the disk after loading.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from fer_emotion.app.core.crop import resize_square, to_gray
from fer_emotion.training import labels as schemes

log = logging.getLogger(__name__)

TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "val", "test")
_SPLIT_ALIASES = {
    "training": TRAIN, "train": TRAIN,
    "publictest": VAL, "val": VAL, "valid": VAL, "validation": VAL,
    "privatetest": TEST, "test": TEST,
}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class DataError(ValueError):
    """A data file or folder that cannot be read as asked; the message names the place."""


@dataclass
class Source:
    """Faces of one data source, in memory."""

    name: str
    pixels: np.ndarray  # uint8 (N, S, S)
    split: np.ndarray  # int8 (N,): TRAIN, VAL or TEST
    labels: np.ndarray  # int64 (N,): index into class_names, -1 where unknown
    class_names: list[str]
    votes: np.ndarray | None = None  # float32 (N, 10) FER+ votes, aligned row by row
    skipped: int = 0
    notes: list[str] = field(default_factory=list)


def split_index(name: str) -> int:
    """TRAIN, VAL or TEST for a split name such as ``PublicTest`` or ``val``."""
    try:
        return _SPLIT_ALIASES[name.strip().lower()]
    except KeyError:
        raise DataError(f"unknown split {name!r}; use Training/PublicTest/PrivateTest or train/val/test") from None


def read_source(path: Path, size: int = 48, skip_bad: bool = False) -> Source:
    """Read a Kaggle CSV, an .npz copy, or an image folder, by what ``path`` is."""
    if path.is_dir():
        return read_folder(path, size)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.suffix == ".npz":
        return read_npz(path)
    return read_fer_csv(path, skip_bad=skip_bad)


def read_npz(path: Path) -> Source:
    """The shared data's ``fer2013.npz`` form (pixels, emotion, usage), read without pickle."""
    with np.load(path, allow_pickle=False) as data:
        missing = {"pixels", "emotion", "usage"} - set(data.files)
        if missing:
            raise DataError(f"{path}: an .npz needs arrays pixels, emotion and usage (missing {sorted(missing)})")
        return Source(
            name=path.name,
            pixels=np.ascontiguousarray(data["pixels"], dtype=np.uint8),
            split=data["usage"].astype(np.int8),
            labels=data["emotion"].astype(np.int64),
            class_names=list(schemes.FER2013),
        )


def read_fer_csv(path: Path, skip_bad: bool = False) -> Source:
    """The Kaggle ``fer2013.csv``: ``emotion,pixels,Usage`` with 2304 space-separated pixels a row."""
    try:
        return _read_fer_csv(path, skip_bad)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text file; --data takes the Kaggle fer2013.csv, an .npz copy of it, "
                        "or an image folder ROOT/<split>/<class>/") from None


def _read_fer_csv(path: Path, skip_bad: bool) -> Source:
    images, splits, labels, bad = [], [], [], 0
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = [h.strip().lower() for h in next(reader, [])]
        if header[:3] != ["emotion", "pixels", "usage"]:
            raise DataError(f"{path}, line 1: expected the header emotion,pixels,Usage, found {','.join(header)!r}")
        for line_number, row in enumerate(reader, start=2):
            try:
                image, split, label = _parse_csv_row(row)
            except ValueError as err:
                if not skip_bad:
                    raise DataError(f"{path}, line {line_number}: {err} (pass --skip-bad to skip such rows)") from None
                bad += 1
                continue
            images.append(image)
            splits.append(split)
            labels.append(label)
    if not images:
        raise DataError(f"{path}: no usable rows")
    source = Source(path.name, np.stack(images), np.array(splits, np.int8), np.array(labels, np.int64),
                    list(schemes.FER2013), skipped=bad)
    if bad:
        source.notes.append(f"{path}: skipped {bad} bad rows")
    return source


def _parse_csv_row(row: list[str]) -> tuple[np.ndarray, int, int]:
    if len(row) != 3:
        raise ValueError(f"expected 3 columns, found {len(row)}")
    emotion_text, pixel_text, usage_text = row
    label = int(emotion_text) if emotion_text.strip() else -1
    if not -1 <= label < len(schemes.FER2013):
        raise ValueError(f"emotion {label} is outside 0..6")
    values = pixel_text.split()
    if len(values) != 48 * 48:
        raise ValueError(f"expected 2304 pixel values, found {len(values)}")
    pixels = np.array(values, dtype=np.int64)  # raises ValueError on non-numeric text
    if pixels.min() < 0 or pixels.max() > 255:
        raise ValueError("pixel values must lie in 0..255")
    try:
        split = split_index(usage_text)
    except DataError as err:
        raise ValueError(str(err)) from None
    return pixels.astype(np.uint8).reshape(48, 48), split, label


def read_votes(path: Path, rows: int) -> np.ndarray:
    """The FER+ vote file (``fer2013new.csv``), aligned row by row with a FER2013 source of ``rows`` rows."""
    votes = []
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
        columns = [header.index(c) if c in header else -1 for c in schemes.VOTE_COLUMNS]
        if -1 in columns:
            raise DataError(f"{path}, line 1: not a FER+ vote file (needs columns {','.join(schemes.VOTE_COLUMNS)})")
        for line_number, row in enumerate(reader, start=2):
            try:
                votes.append([float(row[c]) if row[c].strip() else 0.0 for c in columns])
            except (ValueError, IndexError):
                raise DataError(f"{path}, line {line_number}: vote counts must be numbers") from None
    if len(votes) != rows:
        raise DataError(f"{path} has {len(votes)} vote rows but the FER2013 data has {rows}; they must align row by row")
    return np.array(votes, np.float32)


def read_folder(root: Path, size: int = 48) -> Source:
    """``ROOT/<split>/<class>/*.jpg``: every image to gray ``size`` x ``size``."""
    class_names: list[str] = []
    images, splits, labels = [], [], []
    split_dirs = sorted(d for d in root.iterdir() if d.is_dir())
    for split_dir in split_dirs:
        split = split_index(split_dir.name)
        for class_dir in sorted(d for d in split_dir.iterdir() if d.is_dir()):
            if class_dir.name not in class_names:
                class_names.append(class_dir.name)
            label = class_names.index(class_dir.name)
            for file in sorted(class_dir.iterdir()):
                if file.suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                image = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
                if image is None:
                    raise DataError(f"{file}: not a readable image")
                if image.ndim == 3:
                    image = image[:, :, ::-1] if image.shape[2] == 3 else image[:, :, [2, 1, 0, 3]]
                images.append(resize_square(to_gray(np.ascontiguousarray(image)), size))
                splits.append(split)
                labels.append(label)
    if not images:
        raise DataError(f"{root}: no images found (expected ROOT/<split>/<class>/*.jpg)")
    return Source(root.name, np.stack(images), np.array(splits, np.int8), np.array(labels, np.int64), class_names)
