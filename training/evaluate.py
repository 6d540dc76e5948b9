"""``fer-train eval``: score a checkpoint or an ONNX model on one split; report, confusion matrix PNG/JSON."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

from fer_emotion.training import labels as schemes
from fer_emotion.training.datasets import level_eyes, load_splits
from fer_emotion.training.metrics import confusion_matrix, format_report, report
from fer_emotion.training.plots import plot_confusion

log = logging.getLogger(__name__)


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True,
                        help="a checkpoint (.pt), a run folder (its best.pt) or an exported model (.onnx; a shipped "
                             "model's file name will do)")
    parser.add_argument("--data", type=Path, action="append", required=True, help="as for train; repeat to merge")
    parser.add_argument("--ferplus", type=Path, help="FER+ vote file aligned with the first --data")
    parser.add_argument("--labels", choices=sorted(schemes.SCHEMES), help="label scheme (default: the model's)")
    parser.add_argument("--split", default="val", help="train, val (PublicTest) or test (PrivateTest)")
    parser.add_argument("--tta", choices=("none", "flip"), default="none", help="test-time augmentation")
    parser.add_argument(
        "--vote-rule", choices=sorted(schemes.VOTE_RULES), default="plurality",
        help="scheme ferplus: which faces count and their labels. plurality: every face without a not-a-face "
        "vote and with under 5 unknown votes, labelled by its most-voted emotion (as in training and the cards' "
        "main figures); majority: the FER+ authors' test protocol, where single votes are dropped and a face "
        "counts only if one emotion has more than half of the rest")
    parser.add_argument("--out", type=Path, help="folder for report.json, confusion.json, confusion.png")
    parser.add_argument("--skip-bad", action="store_true")


def onnx_probabilities(path: Path, images: np.ndarray, tta_flip: bool) -> tuple[np.ndarray, list[str], str | None]:
    """Probabilities from an exported model through the app's own classifier adapter and preprocessing."""
    from fer_emotion.app.core.classifier import EmotionClassifier

    classifier = EmotionClassifier(path, device="cpu")
    chunks = []
    for start in range(0, len(images), 256):
        batch = images[start:start + 256]
        probs = classifier(batch)
        if tta_flip:
            probs = (probs + classifier(np.ascontiguousarray(batch[:, :, ::-1]))) / 2
        chunks.append(probs)
    probs = np.concatenate(chunks) if chunks else np.empty((0, len(classifier.labels)), np.float32)
    return probs, list(classifier.labels), classifier.info.extra.get("scheme")


def checkpoint_probabilities(path: Path, images: np.ndarray, tta_flip: bool) -> tuple[np.ndarray, list[str], str]:
    from fer_emotion.models import create_model
    from fer_emotion.training.checkpoint import load_checkpoint, load_model_state
    from fer_emotion.training.engine import predict

    state = load_checkpoint(path)
    cfg = state["config"]
    names = state.get("classes") or list(schemes.SCHEMES[cfg["labels"]])
    model = create_model(cfg["arch"], len(names))
    load_model_state(model, state["model"], cfg["arch"], path)
    model = model.to(memory_format=torch.channels_last)
    probs = predict(model, torch.from_numpy(images), mean=cfg["mean"], std=cfg["std"], tta_flip=tta_flip)
    return probs, names, cfg["labels"]


def model_traits(path: Path) -> tuple[str | None, bool, bool]:
    """The model's label scheme, whether it was trained on faces with level eyes, and whether the model itself
    averages each face with its mirror (an exported model's or ensemble's own flip TTA)."""
    if path.suffix == ".onnx":
        from fer_emotion.app.core.classifier import EmotionClassifier

        info = EmotionClassifier(path, device="cpu").info
        flips = "flip" in (info.extra.get("tta"), info.extra.get("ensemble_tta"))
        return info.extra.get("scheme"), info.levels_eyes, flips
    from fer_emotion.training.checkpoint import load_checkpoint

    cfg = load_checkpoint(path)["config"]
    return cfg["labels"], cfg.get("align", "none") == "eyes", False


def main(args: argparse.Namespace) -> int:
    from fer_emotion.app.core.shipped import shipped_or_given
    from fer_emotion.training.checkpoint import run_checkpoint

    args.model = run_checkpoint(shipped_or_given(args.model))  # a run folder stands for its best.pt
    own_scheme, levelled, flips = model_traits(args.model)
    scheme = args.labels or own_scheme or "fer2013"
    if args.vote_rule != "plurality" and scheme != "ferplus":
        raise SystemExit(f"fer-train eval: --vote-rule {args.vote_rule} is for scheme ferplus, not {scheme}")
    splits = load_splits(args.data, scheme, args.ferplus, skip_bad=args.skip_bad, vote_rule=args.vote_rule)
    split_name = {"training": "train", "publictest": "val", "privatetest": "test"}.get(args.split.lower(), args.split)
    if split_name not in splits:
        raise SystemExit(f"fer-train eval: unknown split {args.split!r}; use train, val or test")
    data = splits[split_name]
    if len(data) == 0:
        raise SystemExit(f"fer-train eval: the {split_name} split has no labelled faces in {', '.join(map(str, args.data))}")
    images = (level_eyes(data.images) if levelled else data.images).numpy()
    reader = onnx_probabilities if args.model.suffix == ".onnx" else checkpoint_probabilities
    probs, names, _ = reader(args.model, images, args.tta == "flip" and not flips)  # a flip of a flip adds nothing
    tta = "flip" if flips or args.tta == "flip" else "none"
    expected = list(schemes.SCHEMES[scheme])
    if names != expected:
        raise SystemExit(f"fer-train eval: the model's classes {names} are not scheme {scheme}'s {expected}")
    result = report(confusion_matrix(data.labels.numpy(), probs.argmax(1), len(names)), names)
    result.update(model=str(args.model), split=split_name, tta=tta, scheme=scheme)
    if scheme == "ferplus":
        result["vote_rule"] = args.vote_rule
    print(format_report(result))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "report.json").write_text(json.dumps(result, indent=2) + "\n")
        (args.out / "confusion.json").write_text(json.dumps(
            {"labels": names, "matrix": result["confusion_matrix"]}, indent=2) + "\n")
        title = f"{args.model.name} on {split_name} (accuracy {result['accuracy']:.1%})"
        plot_confusion(np.array(result["confusion_matrix"]), names, args.out / "confusion.png", title)
        print(f"wrote {args.out / 'report.json'}, confusion.json and confusion.png")
    return 0
