"""``fer-train sweep``: train a grid of architectures with shared settings and compare them."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
from pathlib import Path

from fer_emotion.models import create_model
from fer_emotion.models.cnn import RESBLOCK_GRID
from fer_emotion.training.train import TrainConfig, prepare_run_dir, read_metrics, run_training


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    from fer_emotion.training.train import add_train_arguments

    add_train_arguments(parser)
    parser.add_argument("--archs", default=",".join(RESBLOCK_GRID),
                        help="comma-separated architectures (default: the 12 resblock variants)")


def evaluate_run(run: Path, cfg: TrainConfig) -> dict:
    import numpy as np

    from fer_emotion.training.evaluate import checkpoint_probabilities
    from fer_emotion.training.datasets import load_splits
    from fer_emotion.training.metrics import confusion_matrix, report

    val = load_splits([Path(p) for p in cfg.data], cfg.labels, Path(cfg.ferplus) if cfg.ferplus else None,
                      cfg.label_map)["val"]
    probs, names, _ = checkpoint_probabilities(run / "best.pt", val.images.numpy(), False)
    return report(confusion_matrix(val.labels.numpy(), np.asarray(probs).argmax(1), len(names)), names)


def epoch_seconds(run: Path) -> float:
    times = [float(row["epoch_s"]) for row in read_metrics(run / "metrics.csv")]
    return sum(times) / len(times)


def main(args: argparse.Namespace) -> int:
    if not args.data or not args.out:
        raise SystemExit("fer-train sweep: --data and --out are required")
    base = TrainConfig.from_args(args)
    out = Path(base.out)
    rows = []
    for arch in [a.strip() for a in args.archs.split(",") if a.strip()]:
        run = out / arch
        cfg = dataclasses.replace(base, arch=arch, out=str(run))
        prepare_run_dir(run, args.overwrite)
        (run / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
        run_training(cfg, None, progress=args.progress)
        result = evaluate_run(run, cfg)
        params = sum(p.numel() for p in create_model(arch, len(result["labels"])).parameters())
        rows.append({"arch": arch, "accuracy": result["accuracy"], "precision": result["macro_precision"],
                     "recall": result["macro_recall"], "f1": result["macro_f1"], "params": params,
                     "epoch_s": epoch_seconds(run)})
        write_tables(rows, out)
    print((out / "sweep.md").read_text())
    return 0


def write_tables(rows: list[dict], out: Path) -> None:
    with (out / "sweep.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| arch | accuracy | precision | recall | F1 | params | s/epoch |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: -r["accuracy"]):
        lines.append(f"| {r['arch']} | {r['accuracy']:.4f} | {r['precision']:.4f} | {r['recall']:.4f} | "
                     f"{r['f1']:.4f} | {r['params']:,} | {r['epoch_s']:.1f} |")
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
