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
    """Loss, accuracy and learning rate by epoch, the best epoch (highest ``val_acc``, the one best.pt holds)
    marked. ``val_name``: the legend of ``val_acc`` (e.g. its FER+ vote rule beside the other's column)."""
    from matplotlib.ticker import MaxNLocator

    with metrics_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    epochs = [int(r["epoch"]) for r in rows]
    val_acc = [float(r["val_acc"]) for r in rows]
    best = epochs[int(np.argmax(val_acc))]
    figure, (loss_axis, acc_axis, lr_axis) = plt.subplots(1, 3, figsize=(14, 4), width_ratios=(1, 1, 0.7))
    line = {"marker": "o", "markersize": 3}
    loss_axis.plot(epochs, [float(r["train_loss"]) for r in rows], label="train", **line)
    loss_axis.plot(epochs, [float(r["val_loss"]) for r in rows], label=val_name, **line)
    loss_axis.set(xlabel="epoch", ylabel="loss", title="Loss")
    acc_axis.plot(epochs, [float(r["train_acc"]) for r in rows], label="train", **line)
    acc_axis.plot(epochs, val_acc, label=val_name, **line)
    for column in [c for c in rows[0] if c.startswith("val_") and c.endswith("_acc") and c != "val_acc"]:
        scored = [(epoch, float(r[column])) for epoch, r in zip(epochs, rows) if r[column]]  # empty before a resume
        acc_axis.plot(*zip(*scored), label=f"val ({column[4:-4]})", **line)  # framed, majority
    acc_axis.plot([best], [max(val_acc)], marker="*", markersize=14, color="crimson", linestyle="none",
                  label=f"best: epoch {best}, {max(val_acc):.4f}")
    acc_axis.set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    if "lr" in rows[0]:
        rates = [float(r["lr"]) for r in rows]
        lr_axis.plot(epochs, rates, color="gray", **line)
        if min(rates) > 0 and max(rates) / min(rates) > 20:
            lr_axis.set_yscale("log")
    lr_axis.set(xlabel="epoch", ylabel="learning rate", title="Learning rate (at each epoch's end)")
    for axis in (loss_axis, acc_axis, lr_axis):
        axis.grid(alpha=0.3)
        axis.axvline(best, color="crimson", alpha=0.3, linestyle="--")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    for axis in (loss_axis, acc_axis):
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
