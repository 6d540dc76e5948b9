"""Small synthetic datasets written in all three formats: Kaggle CSV, FER+ votes, image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_emotion.training.labels import FER2013
from fer_emotion.training.train import read_metrics

SPLITS = ("Training",) * 42 + ("PublicTest",) * 14 + ("PrivateTest",) * 7


def synthetic_faces(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """48x48 images whose class is drawn as a bright bar at a class-specific height (learnable)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 7
    images = rng.integers(0, 60, (count, 48, 48)).astype(np.uint8)
    for image, label in zip(images, labels):
        image[5 + label * 6:9 + label * 6, 4:44] = 230
    return images, labels


def write_fer_csv(path: Path, images: np.ndarray, labels: np.ndarray, usages=SPLITS) -> Path:
    with path.open("w", newline="\n") as handle:
        handle.write("emotion,pixels,Usage\n")
        for image, label, usage in zip(images, labels, usages):
            handle.write(f"{label},{' '.join(map(str, image.ravel().tolist()))},{usage}\n")
    return path


def votes_for(labels: np.ndarray) -> np.ndarray:
    """FER+ votes (10 columns) agreeing with the FER2013 labels, mapped to FER+ order."""
    fer_to_plus = {0: 4, 1: 5, 2: 6, 3: 1, 4: 3, 5: 2, 6: 0}
    votes = np.zeros((len(labels), 10), int)
    for row, label in enumerate(labels):
        votes[row, fer_to_plus[int(label)]] = 8
        votes[row, 0] += 2  # two annotators said neutral
    return votes


def write_votes(path: Path, votes: np.ndarray, usages=SPLITS) -> Path:
    header = "Usage,Image name,neutral,happiness,surprise,sadness,anger,disgust,fear,contempt,unknown,NF"
    lines = [header] + [f"{u},fer{i:07d}.png," + ",".join(map(str, v)) for i, (u, v) in enumerate(zip(usages, votes))]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    images, labels = synthetic_faces(len(SPLITS))
    csv_path = write_fer_csv(root / "fer2013.csv", images, labels)
    votes_path = write_votes(root / "fer2013new.csv", votes_for(labels))
    folder = root / "folder"
    for index, (image, label, usage) in enumerate(zip(images, labels, SPLITS)):
        split = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}[usage]
        target = folder / split / FER2013[label]
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.kron(image, np.ones((2, 2), np.uint8))).save(target / f"{index}.png")  # 96 px
    return {"csv": csv_path, "votes": votes_path, "folder": folder, "images": images, "labels": labels}


def plateau_cuts_follow_validation(run, factor):
    """Check metrics.csv against --plateau-patience 0: each epoch whose watched accuracy (val_raw_acc with --ema,
    else val_acc) is no better than the best before it multiplies the next epoch's learning rate by ``factor``;
    return how many cuts there were."""
    rows = read_metrics(run / "metrics.csv")
    best, cuts = -1.0, 0
    for row, following in zip(rows, rows[1:]):
        acc, lr = float(row.get("val_raw_acc") or row["val_acc"]), float(row["lr"])
        improved = acc > best * (1 + 1e-4)  # ReduceLROnPlateau's default relative threshold
        best = max(best, acc)
        assert float(following["lr"]) == pytest.approx(lr if improved else lr * factor)
        cuts += not improved
    return cuts
