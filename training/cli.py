"""``fer-train``: train, evaluate, export and compare facial-expression models."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path


TRAIN_EXAMPLES = """examples:
  fer-train train --recipe fer2013_vgg --data fer2013.npz --out runs/vgg
      the shipped default model: both phases, then runs/vgg/fer2013_vgg.onnx (hours on a CPU)
  fer-train train --recipe fer2013 --data fer2013.npz --out runs/try --epochs 1
      a smaller model's chain in minutes, to see that it all works
  fer-train train --data my_faces/ --arch fernet --epochs 30 --out runs/mine
      your own image folder, laid out as ROOT/<split>/<class>/*.jpg (train, val, test)
  fer-train train --resume runs/mine
      continue after a stop (Ctrl-C, a kill, --stop-after)
  torchrun --nproc-per-node 2 -m fer_emotion.training.cli train --recipe fer2013 --data fer2013.npz --out runs/ddp
      several processes or GPUs (--batch-size is per process)"""


class OptionsHelp(argparse.RawDescriptionHelpFormatter):
    """Defaults in the help where they say something: not for flags, nor for options without a value."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        quiet = action.default in (None, True, False, [], "", argparse.SUPPRESS) or not action.option_strings
        return text if quiet or "%(default)" in text else f"{text} (default: %(default)s)"


def get_args_parser() -> argparse.ArgumentParser:
    from fer_emotion.training import train

    parser = argparse.ArgumentParser(prog="fer-train", description="Train, evaluate, export and compare "
                                     "facial-expression models for the fer-emotion app.")
    commands = parser.add_subparsers(dest="command", required=True)
    defaults = OptionsHelp
    train.add_train_arguments(commands.add_parser("train", help="train one model into a run folder",
                                                  formatter_class=defaults, epilog=TRAIN_EXAMPLES))
    export = commands.add_parser(
        "export", help="a checkpoint (or, with --ensemble, several models) as one ONNX file with the app's metadata",
        epilog="example: fer-train export --ensemble runs/a runs/b assets/models/fer2013.onnx --int8 --tta flip "
               "--data fer2013.npz --out ensemble.onnx")
    export.add_argument("sources", type=Path, nargs="+", metavar="CHECKPOINT",
                        help="a checkpoint or run folder (its best.pt); with --ensemble, several, or .onnx models")
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--overwrite", action="store_true")
    export.add_argument("--int8", action="store_true",
                        help="8-bit model (about twice as fast on CPUs), calibrated on the run's training faces")
    export.add_argument("--tta", choices=("none", "flip"), default="none",
                        help="average each face with its mirror image (in an ensemble's graph, else by the app)")
    export.add_argument("--ensemble", action="store_true",
                        help="one model that averages the probabilities of all the given models (same classes and "
                             "preprocessing)")
    export.add_argument("--data", type=Path, action="append",
                        help="with --ensemble: score it on this data's validation split and keep the figure in its "
                             "metadata")
    from fer_emotion.training import baselines, evaluate, sweep, viz

    evaluate.add_eval_arguments(commands.add_parser("eval", help="score a model on one split"))
    sweep.add_sweep_arguments(commands.add_parser("sweep", help="train a grid of architectures and compare them",
                                                  formatter_class=defaults))
    baselines.add_knn_arguments(commands.add_parser("knn", help="nearest-neighbour baseline on raw pixels",
                                                    formatter_class=defaults))
    viz.add_viz_arguments(commands.add_parser("viz", help="first-layer filters and feature maps of one face"))
    commands.add_parser("models", help="list the architectures")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = get_args_parser().parse_args(argv)
    from fer_emotion.training.distributed import launched_rank

    level = logging.INFO if launched_rank() == 0 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for chatty in ("onnxscript", "onnx_ir", "onnxruntime.quantization"):  # each export's pass-by-pass notes
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        return run_command(args, argv)
    except KeyboardInterrupt:
        print(f"fer-train: stopped{resume_hint(args)}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`fer-train models | head`): nothing more to say to it
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush does not fail too
        return 141
    except Exception as err:
        if not isinstance(err, user_errors()):
            raise
        print(f"fer-train: {err}", file=sys.stderr)
        return 1


def user_errors() -> tuple[type[Exception], ...]:
    """What bad input raises: said in one line, without a traceback."""
    from fer_emotion.app.core.classifier import ModelLoadError
    from fer_emotion.training.checkpoint import CheckpointError
    from fer_emotion.training.data import DataError
    from fer_emotion.training.ensemble import EnsembleError
    from fer_emotion.training.export import ExportError
    from fer_emotion.training.recipe import RecipeError

    return ModelLoadError, CheckpointError, DataError, ExportError, EnsembleError, RecipeError


def resume_hint(args: argparse.Namespace) -> str:
    """How to go on after Ctrl-C: a training run continues from its last.pt, if it got that far."""
    if args.command != "train":
        return ""
    run = args.resume or args.out
    # a recipe's run keeps each phase's last.pt in its own folder, and --resume takes the recipe's folder
    if run is not None and ((run / "last.pt").is_file() or any(run.glob("phase*/last.pt"))):
        return f"; continue with: fer-train train --resume {run}"
    return " before the first epoch ended; nothing to resume, run the same command again"


def typed_train_options(argv: list[str]) -> dict:
    """The ``fer-train train`` options typed in ``argv``, without the defaults of those not typed."""
    from fer_emotion.training.train import add_train_arguments

    parser = argparse.ArgumentParser(add_help=False)
    add_train_arguments(parser)
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return vars(parser.parse_known_args(argv[1:])[0])


def run_command(args: argparse.Namespace, argv: list[str]) -> int:
    if args.command == "train":
        from fer_emotion.training.train import main as train_main

        return train_main(args, typed_train_options(argv))
    if args.command in ("sweep", "knn", "viz"):
        module = {"sweep": "fer_emotion.training.sweep", "knn": "fer_emotion.training.baselines", "viz": "fer_emotion.training.viz"}[args.command]
        return __import__(module, fromlist=["main"]).main(args)
    if args.command == "eval":
        from fer_emotion.training.evaluate import main as eval_main

        return eval_main(args)
    if args.command == "export":
        return export(args)
    if args.command == "models":
        from fer_emotion.models import list_models
        from fer_emotion.models.cnn import RESBLOCK_GRID
        from fer_emotion.models.registry import ALIASES, describe

        aliases = {target: name for name, target in ALIASES.items()}
        print(f"{'architecture':20s} {'parameters':>11s}  what it is (parameters for 7 classes)")
        for name in list_models() + RESBLOCK_GRID:
            params, text = describe(name)
            also = f" [--arch {aliases[name]} too]" if name in aliases else ""
            print(f"{name:20s} {params:11,d}  {text}{also}")
        return 0
    return 2


def export(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.overwrite:
        raise SystemExit(f"fer-train: {args.out} exists; pass --overwrite to replace it")
    if len(args.sources) > 1 and not args.ensemble:
        raise SystemExit("fer-train export: one checkpoint, or several with --ensemble")
    if args.data and not args.ensemble:
        raise SystemExit("fer-train export: --data is for --ensemble")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.ensemble:
        from fer_emotion.training.ensemble import export_ensemble

        info = export_ensemble(args.sources, args.out, int8=args.int8, flip=args.tta == "flip", data=args.data)
        scored = f"; validation accuracy {info.metrics['val_acc']:.4f}" if info.metrics else ""
        count = len(json.loads(info.extra["members"]))  # an ensemble file given adds its members
        print(f"wrote {args.out}: the average of {count} models{scored}")
        return 0
    from fer_emotion.training.export import export_checkpoint

    difference = export_checkpoint(args.sources[0], args.out, int8=args.int8, tta=args.tta)
    stage = " (of the float model it was quantised from)" if args.int8 else ""
    print(f"wrote {args.out}; largest ONNX Runtime / PyTorch difference{stage} {difference:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
