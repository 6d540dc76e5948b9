"""Pictures of a run: learning curves and confusion matrices."""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_curves(metrics_csv: Path, out: Path, val_name: str = "val") -> None:
    """``val_name``: the legend of ``val_acc`` (e.g. its FER+ vote rule beside the other's column)."""
    with metrics_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    epochs = [int(r["epoch"]) for r in rows]
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axis.plot(epochs, [float(r["train_loss"]) for r in rows], label="train")
    loss_axis.plot(epochs, [float(r["val_loss"]) for r in rows], label=val_name)
    loss_axis.set(xlabel="epoch", ylabel="loss", title="Loss")
    acc_axis.plot(epochs, [float(r["train_acc"]) for r in rows], label="train")
    acc_axis.plot(epochs, [float(r["val_acc"]) for r in rows], label=val_name)
    for column in [c for c in rows[0] if c.startswith("val_") and c.endswith("_acc") and c != "val_acc"]:
        scored = [(epoch, float(r[column])) for epoch, r in zip(epochs, rows) if r[column]]  # empty before a resume
        acc_axis.plot(*zip(*scored), label=f"val ({column[4:-4]})")  # framed, majority
    acc_axis.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    for axis in (loss_axis, acc_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def plot_confusion(matrix: np.ndarray, labels: list[str], out: Path, title: str) -> None:
    normalised = matrix / np.clip(matrix.sum(1, keepdims=True), 1, None)
    width = max(5.0, 1.0 + 0.8 * len(labels))
    figure, axis = plt.subplots(figsize=(width, 1.2 + 0.7 * len(labels)))
    axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(labels)), labels)
    axis.set(xlabel="predicted", ylabel="true")
    axis.set_title(textwrap.fill(title, int(width * 9)), fontsize=10)  # a long model name wraps, not cut
    for (row, col), count in np.ndenumerate(matrix):
        colour = "white" if normalised[row, col] > 0.5 else "black"
        axis.text(col, row, f"{count}\n{normalised[row, col]:.0%}", ha="center", va="center", fontsize=7, color=colour)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)
