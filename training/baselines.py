"""``fer-train knn``: the nearest-neighbour baseline on raw pixels."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from fer_emotion.training import labels as schemes
from fer_emotion.training.datasets import load_splits


def add_knn_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, action="append", required=True)
    parser.add_argument("--ferplus", type=Path)
    parser.add_argument("--labels", choices=sorted(schemes.SCHEMES), default="fer2013")
    parser.add_argument("--metric", choices=("both", "cosine", "euclidean"), default="both",
                        help="distance between raw-pixel faces (default: both, side by side)")
    parser.add_argument("--k", type=int, default=1, help="neighbours that vote (default 1)")


def knn_predict(train_x: torch.Tensor, train_y: torch.Tensor, query: torch.Tensor, k: int, metric: str,
                classes: int, chunk: int = 1024) -> torch.Tensor:
    """Majority label of the k nearest training rows for each query row (float rows of pixels)."""
    if metric == "cosine":
        train_x = torch.nn.functional.normalize(train_x, dim=1)
        query = torch.nn.functional.normalize(query, dim=1)
    else:
        train_sq = (train_x * train_x).sum(1)
    predictions = []
    for start in range(0, len(query), chunk):
        block = query[start:start + chunk]
        if metric == "cosine":
            scores = block @ train_x.T  # larger is nearer
        else:
            scores = 2 * block @ train_x.T - train_sq  # -(distance^2) up to a per-row constant
        nearest = scores.topk(k, dim=1).indices
        votes = torch.nn.functional.one_hot(train_y[nearest], classes).sum(1)
        predictions.append(votes.argmax(1))
    return torch.cat(predictions) if predictions else torch.empty(0, dtype=torch.long)


def main(args: argparse.Namespace) -> int:
    splits = load_splits(args.data, args.labels, args.ferplus)
    train, val = splits["train"], splits["val"]
    accuracies = []
    for metric in ("cosine", "euclidean") if args.metric == "both" else (args.metric,):
        started = time.perf_counter()
        predictions = knn_predict(train.images.flatten(1).float(), train.labels, val.images.flatten(1).float(),
                                  args.k, metric, len(schemes.SCHEMES[args.labels]))
        elapsed = time.perf_counter() - started
        accuracies.append(float((predictions == val.labels).float().mean()))
        print(f"knn k={args.k} metric={metric}: val accuracy {accuracies[-1]:.4f} on {len(val)} faces "
              f"({len(train)} training faces) in {elapsed:.2f} s")
    return 0 if np.isfinite(accuracies).all() else 1
