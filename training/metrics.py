"""Classification metrics from a confusion matrix."""

from __future__ import annotations

import numpy as np


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    return np.bincount(labels * classes + predictions, minlength=classes * classes).reshape(classes, classes)


def report(matrix: np.ndarray, names: list[str]) -> dict:
    """Accuracy, macro precision/recall/F1 and per-class figures from a confusion matrix."""
    true_positive = np.diag(matrix).astype(np.float64)
    predicted = matrix.sum(0).astype(np.float64)
    actual = matrix.sum(1).astype(np.float64)
    precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
    recall = np.divide(true_positive, actual, out=np.zeros_like(true_positive), where=actual > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    present = actual > 0  # macro averages over the classes that occur in this split
    return {
        "accuracy": float(true_positive.sum() / max(matrix.sum(), 1)),
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "count": int(matrix.sum()),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(names, precision, recall, f1, actual)
        },
        "confusion_matrix": matrix.tolist(),
        "labels": list(names),
    }


def format_report(result: dict) -> str:
    lines = [f"accuracy {result['accuracy']:.4f}  macro precision {result['macro_precision']:.4f}  "
             f"macro recall {result['macro_recall']:.4f}  macro F1 {result['macro_f1']:.4f}  ({result['count']} faces)",
             f"{'class':12s} {'precision':>9s} {'recall':>9s} {'f1':>9s} {'support':>8s}"]
    for name, row in result["per_class"].items():
        lines.append(f"{name:12s} {row['precision']:9.4f} {row['recall']:9.4f} {row['f1']:9.4f} {row['support']:8d}")
    return "\n".join(lines)
