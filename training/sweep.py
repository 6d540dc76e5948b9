"""``fer-train sweep``: train a grid of architectures with shared settings and compare them."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import itertools
import json
from pathlib import Path

from fer_emotion.models import create_model
from fer_emotion.models.cnn import RESBLOCK_GRID
from fer_emotion.models.registry import default_lr
from fer_emotion.training.train import TrainConfig, prepare_run_dir, read_metrics, run_training


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    from fer_emotion.training.train import add_train_arguments

    add_train_arguments(parser)
    parser.add_argument("--archs", default=",".join(RESBLOCK_GRID),
                        help="comma-separated architectures (default: the 12 resblock variants)")
    parser.add_argument("--grid", action="append", default=[], metavar="OPTION=V1,V2",
                        help="another axis of the grid, e.g. lr=0.01,0.05 or optimizer=sgd,adamw or batch_size=64,128 "
                             "or weight_decay=5e-4,1e-3 (any train option, by its dest name); every combination "
                             "with every --archs entry is trained")


def best_epoch_report(run: Path) -> dict:
    """The report the run wrote of its best epoch on its validation faces (training.train.write_report)."""
    return json.loads((run / "report.json").read_text())


def epoch_seconds(run: Path) -> float:
    times = [float(row["epoch_s"]) for row in read_metrics(run / "metrics.csv")]
    return sum(times) / len(times)


def grid_axes(args: argparse.Namespace, base: TrainConfig) -> dict[str, list]:
    """The grid's axes: option -> values (typed like the option), architectures first."""
    axes = {"arch": [a.strip() for a in args.archs.split(",") if a.strip()]}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for item in args.grid:
        name, _, values = item.partition("=")
        name = name.strip().lstrip("-").replace("-", "_")
        if name not in fields or not values:
            raise SystemExit(f"fer-train sweep: --grid {item!r}: write OPTION=V1,V2 with a train option "
                             f"(lr, optimizer, batch_size, weight_decay, arch, ...)")
        kind = type(getattr(base, name))
        try:
            axes[name] = [parse_value(kind, value.strip()) for value in values.split(",") if value.strip()]
        except ValueError:
            raise SystemExit(f"fer-train sweep: --grid {item!r}: {name} takes {kind.__name__} values") from None
    return axes


def parse_value(kind: type, text: str):
    if kind is bool:
        return text.lower() in ("1", "true", "yes")
    return kind(text)


def main(args: argparse.Namespace) -> int:
    if not args.data or not args.out:
        raise SystemExit("fer-train sweep: --data and --out are required")
    if args.recipe or args.resume:
        raise SystemExit("fer-train sweep: --recipe and --resume are for fer-train train")
    base = TrainConfig.from_args(args)
    out = Path(base.out)
    axes = grid_axes(args, base)
    varied = [name for name, values in axes.items() if len(values) > 1 or name == "arch"]
    rows = []
    for values in itertools.product(*axes.values()):
        settings = dict(zip(axes, values))
        named = ",".join(f"{name}={settings[name]}" for name in varied) if varied != ["arch"] else settings["arch"]
        run = out / named
        own_rate = {} if args.lr is not None or "lr" in settings else {"lr": default_lr(settings["arch"])}
        cfg = dataclasses.replace(base, **own_rate, **settings, out=str(run))
        prepare_run_dir(run, args.overwrite)
        (run / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=2) + "\n")
        run_training(cfg, None, progress=args.progress)
        result = best_epoch_report(run)
        params = sum(p.numel() for p in create_model(cfg.arch, len(result["labels"])).parameters())
        rows.append({**{name: settings[name] for name in varied}, "accuracy": result["accuracy"],
                     "precision": result["macro_precision"], "recall": result["macro_recall"],
                     "f1": result["macro_f1"], "params": params, "epoch_s": epoch_seconds(run)})
        write_tables(rows, out, varied)
    print((out / "sweep.md").read_text())
    return 0


def write_tables(rows: list[dict], out: Path, varied: list[str]) -> None:
    """sweep.csv and sweep.md (best first): one row per combination, its settings then its validation figures."""
    with (out / "sweep.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(varied) + " | accuracy | precision | recall | F1 | params | s/epoch |",
             "|" + "---|" * len(varied) + "---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: -r["accuracy"]):
        lines.append("| " + " | ".join(str(r[name]) for name in varied) + f" | {r['accuracy']:.4f} | "
                     f"{r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['params']:,} | {r['epoch_s']:.1f} |")
    (out / "sweep.md").write_text("\n".join(lines) + "\n")
