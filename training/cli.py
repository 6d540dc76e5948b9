"""``fer-train``: train, evaluate, export and compare facial-expression models."""

from __future__ import annotations

import argparse
import logging
import sys


def get_args_parser() -> argparse.ArgumentParser:
    from training import train

    parser = argparse.ArgumentParser(prog="fer-train", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train.add_train_arguments(commands.add_parser("train", help="train one model into a run folder"))
    export = commands.add_parser("export", help="a checkpoint as one ONNX file with the app's metadata")
    export.add_argument("checkpoint", type=__import__("pathlib").Path)
    export.add_argument("--out", type=__import__("pathlib").Path, required=True)
    export.add_argument("--overwrite", action="store_true")
    commands.add_parser("models", help="list the architectures")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    if args.command == "train":
        from training.train import main as train_main

        return train_main(args)
    if args.command == "export":
        from training.export import export_checkpoint

        if args.out.exists() and not args.overwrite:
            raise SystemExit(f"fer-train: {args.out} exists; pass --overwrite to replace it")
        difference = export_checkpoint(args.checkpoint, args.out)
        print(f"wrote {args.out}; largest ONNX Runtime / PyTorch difference {difference:.2e}")
        return 0
    if args.command == "models":
        from models import list_models
        from models.cnn import RESBLOCK_GRID

        print("\n".join(list_models() + RESBLOCK_GRID))
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
