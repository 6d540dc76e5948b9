"""Which FER2013 models to average: PublicTest accuracy of every subset of the given models, as they are and
with flip TTA, each model's probabilities taken through the app's classifier (a model whose metadata asks for flip
TTA scored both ways too). Every model gets the faces as they are, as in an ensemble's graph (levelled only when
every model was trained on level eyes). An ensemble file is split into its members first, as `fer-train export
--ensemble` splits it, flip TTA or not. Run by hand:

    .venv/bin/python benchmarks/ensemble_subsets.py --models assets/models/fer2013_ensemble.onnx runs/x/model.onnx

Prints a Markdown table, best first. The figures are of the averaged probabilities; the file `fer-train export
--ensemble` writes scores the same within its parity check (1e-4). ``--framed`` adds two columns: the same on the
faces as the app cuts them (`benchmarks/framing.py --angles 0`: each face enlarged in a frame of its mirror image,
MTCNN's box cut with each model's margin; the faces MTCNN finds, about 86%), so that an ensemble can be chosen on
both; ``--sort both`` ranks by the sum of the two flip TTA columns.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.label_agreement import as_the_app_feeds, public_test  # noqa: E402
from fer_emotion.app.core.classifier import EmotionClassifier  # noqa: E402
from fer_emotion.training.ensemble import split_ensemble  # noqa: E402
from fer_emotion.training.labels import FER2013  # noqa: E402


def classifier_for(path: Path) -> EmotionClassifier:
    classifier = EmotionClassifier(path, device="cpu", threads=1)
    if tuple(classifier.labels) != FER2013:
        raise SystemExit(f"{path}: its classes are {', '.join(classifier.labels)}, not FER2013's seven")
    classifier.info.extra.pop("tta", None)  # a model's own flip TTA off: the table's two columns say which
    return classifier


def probabilities(classifier: EmotionClassifier, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A model's probabilities on the faces and on their mirror images."""
    mirrored = np.ascontiguousarray(faces[:, :, ::-1])
    run = lambda f: np.concatenate([classifier(f[s:s + 256]) for s in range(0, len(f), 256)])  # noqa: E731
    return run(faces), run(mirrored)


def short(name: str) -> str:
    """``ensemble.onnx: runs/x/model.onnx`` -> ``ensemble.onnx: model.onnx``: file names only."""
    return ": ".join(Path(part).name for part in name.split(": "))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, nargs="+", required=True)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fer2013.npz")
    parser.add_argument("--smallest", type=int, default=1, help="fewest members a subset has")
    parser.add_argument("--top", type=int, default=0, help="print only this many rows (0: all)")
    parser.add_argument("--framed", action="store_true", help="also score the faces as the app cuts them")
    parser.add_argument("--sort", choices=("plain", "flip", "both"), default="plain",
                        help="rank by the faces as they are, with flip TTA, or (with --framed) by the sum of both "
                             "flip TTA columns")
    args = parser.parse_args()
    if args.sort == "both" and not args.framed:
        parser.error("--sort both needs --framed")
    faces, labels, _ = public_test(args.data)
    with tempfile.TemporaryDirectory() as scratch:
        classifiers = {short(name): classifier_for(member) for path in args.models
                       for member, name in split_ensemble(path, Path(scratch))}
        level = all(c.info.levels_eyes for c in classifiers.values())
        fed = as_the_app_feeds(next(iter(classifiers.values())), faces) if level else faces
        named = {name: probabilities(classifier, fed) for name, classifier in classifiers.items()}
        framed, found = app_framed(faces, classifiers, level) if args.framed else ({}, None)
    measures = [(named, labels)] + ([(framed, labels[found])] if args.framed else [])
    rows = []
    for size in range(max(1, args.smallest), len(classifiers) + 1):
        for subset in itertools.combinations(classifiers, size):
            rows.append((*(score for probs, truth in measures for score in both_ways(probs, truth, subset)), subset))
    rank = {"plain": lambda row: row[0], "flip": lambda row: row[1], "both": lambda row: row[1] + row[3]}[args.sort]
    rows.sort(key=lambda row: -rank(row))
    columns = ["as they are", "flip TTA"] + (["app-framed", "app-framed, flip TTA"] if args.framed else [])
    framing = f"; app-framed: the {int(found.sum())} MTCNN finds" if args.framed else ""
    print(f"PublicTest, {len(labels)} faces{framing}\n\n| members | " + " | ".join(columns) + " |\n|---|"
          + "---:|" * len(columns))
    for *scores, subset in rows[:args.top or None]:
        print(f"| {' + '.join(subset)} | " + " | ".join(f"{score:.4f}" for score in scores) + " |")
    return 0


def both_ways(named: dict[str, tuple[np.ndarray, np.ndarray]], labels: np.ndarray,
              subset: tuple[str, ...]) -> tuple[float, float]:
    """A subset's accuracy with its members' probabilities averaged, as the faces are and with flip TTA."""
    plain = np.mean([named[n][0] for n in subset], axis=0)
    flipped = (plain + np.mean([named[n][1] for n in subset], axis=0)) / 2
    return float((plain.argmax(1) == labels).mean()), float((flipped.argmax(1) == labels).mean())


def app_framed(faces: np.ndarray, classifiers: dict[str, EmotionClassifier],
               level: bool) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Each model's probabilities on the faces as the app cuts them with its own margin (levelled when every
    model wants level eyes, as an ensemble's faces are), and which faces the detector found."""
    from fer_emotion.training.reframe import reframe_faces

    cut = {margin: reframe_faces(faces, margin, level) for margin in {c.info.crop_margin for c in classifiers.values()}}
    found = next(iter(cut.values()))[1]
    return {name: probabilities(c, np.ascontiguousarray(cut[c.info.crop_margin][0][found]))
            for name, c in classifiers.items()}, found


if __name__ == "__main__":
    sys.exit(main())
