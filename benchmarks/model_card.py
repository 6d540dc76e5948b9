"""Write a model card (Markdown) from a run folder and a `fer-train eval --out` report.

    python benchmarks/model_card.py RUN_DIR EVAL_DIR MODEL.onnx --command "fer-train train ..." \
        --hardware "2-core AMD EPYC, no GPU" --out assets/models/NAME.md [--note TEXT ...]

Copies the confusion matrix next to the card as NAME_confusion.png.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fer_emotion.app.core.classifier import EmotionClassifier  # noqa: E402
from fer_emotion.models import create_model  # noqa: E402
from fer_emotion.training.train import read_metrics  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("eval", type=Path, nargs="+", help="eval folders: the first is the main one")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--command", required=True, help="the exact command that trained it")
    parser.add_argument("--export-command", required=True)
    parser.add_argument("--hardware", required=True)
    parser.add_argument("--speed", default="", help="measured speed line")
    parser.add_argument("--note", action="append", default=[], help="a known weakness or remark")
    parser.add_argument("--first-phase", type=Path, metavar="RUN_DIR",
                        help="the run this one started from (its --init), counted in the training time")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    config = json.loads((args.run / "config.json").read_text())
    rows = read_metrics(args.run / "metrics.csv")
    first = read_metrics(args.first_phase / "metrics.csv") if args.first_phase else []
    minutes = sum(float(r["epoch_s"]) for r in first + rows) / 60
    epochs = f"{len(first)} + {len(rows)} epochs (the second phase from the first's best weights)" if first \
        else f"{len(rows)} epochs"
    best = max(rows, key=lambda r: float(r["val_acc"]))
    info = EmotionClassifier(args.model, device="cpu").info
    params = sum(p.numel() for p in create_model(config["arch"], len(info.labels)).parameters())
    reports = [json.loads((folder / "report.json").read_text()) for folder in args.eval]
    main_report = reports[0]
    confusion = args.out.with_name(args.out.stem + "_confusion.png")
    shutil.copyfile(args.eval[0] / "confusion.png", confusion)

    lines = [
        f"# Model card: `{args.model.name}`", "",
        f"- **Task**: facial expression, {len(info.labels)} classes: {', '.join(info.labels)}",
        f"- **Data**: {info.dataset}; label scheme `{config['labels']}`"
        + (" (vote distribution as soft targets)" if config.get("soft") else ""),
        f"- **Architecture**: `{config['arch']}`, {params:,} parameters, input 48x48 gray, "
        f"normalised as (x/255 - {info.mean}) / {info.std}; crop margin {info.crop_margin}",
        f"- **Precision**: {info.extra.get('precision', 'float32')}",
        f"- **Training**: {epochs}, {minutes:.0f} min on {args.hardware}; "
        f"best validation epoch {best['epoch']}{' of the second phase' if first else ''} "
        "(selected on the validation split only"
        + (f", FER+ faces by the {config['vote_rule']} rule" if config.get("vote_rule", "plurality") != "plurality" else "")
        + ")",
        f"- **Created**: {info.created}", "",
        "## Reproduce", "", "```bash", args.command, args.export_command, "```", "",
        "## Validation results", "",
        "| model | split | TTA | accuracy | macro precision | macro recall | macro F1 | faces |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for report in reports:
        lines.append(f"| {precision_of(Path(report['model']))} | {split_of(report)} | {report['tta']} | {report['accuracy']:.4f} | {report['macro_precision']:.4f} | "
                     f"{report['macro_recall']:.4f} | {report['macro_f1']:.4f} | {report['count']} |")
    lines += ["", f"Per class ({main_report['split']}, TTA {main_report['tta']}):", "",
              "| class | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for name, row in main_report["per_class"].items():
        lines.append(f"| {name} | {row['precision']:.3f} | {row['recall']:.3f} | {row['f1']:.3f} | {row['support']} |")
    lines += ["", f"![confusion matrix]({confusion.name})", ""]
    if args.speed:
        lines += ["## Speed", "", args.speed, ""]
    lines += ["## Known weaknesses", ""] + [f"- {note}" for note in args.note] + [""]
    lines += ["## Licence", "", "Trained on FER2013 (Kaggle competition terms; research and education use)"
              + (" with FER+ labels (MIT)" if config.get("ferplus") else "") + ". Check those terms before commercial use.", ""]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out} and {confusion}")
    return 0


def split_of(report: dict) -> str:
    """The report's split, and the FER+ vote rule where it is not the cards' usual plurality."""
    rule = report.get("vote_rule", "plurality")
    return report["split"] if rule == "plurality" else f"{report['split']}, {rule} of FER+ votes"


def precision_of(model: Path) -> str:
    """'int8' or 'float32' for an .onnx file (from its metadata); a .pt checkpoint holds float32 weights."""
    if model.suffix != ".onnx":
        return "float32 (checkpoint)"
    return EmotionClassifier(model, device="cpu").info.extra.get("precision", "float32")


if __name__ == "__main__":
    sys.exit(main())
