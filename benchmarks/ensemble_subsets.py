"""Which FER2013 models to average: PublicTest accuracy of every subset of the given models, as they are and
with flip TTA, each model's probabilities taken through the app's classifier (a model whose metadata asks for flip
TTA scored both ways too). Every model gets the faces as they are, as in an ensemble's graph (levelled only when
every model was trained on level eyes). An ensemble file is split into its members first, as `fer-train export
--ensemble` splits it, flip TTA or not. Run by hand:

    .venv/bin/python benchmarks/ensemble_subsets.py --models assets/models/fer2013_ensemble.onnx runs/x/model.onnx

Prints a Markdown table, best first. The figures are of the averaged probabilities; the file `fer-train export
--ensemble` writes scores the same within its parity check (1e-4).
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
    args = parser.parse_args()
    faces, labels, _ = public_test(args.data)
    with tempfile.TemporaryDirectory() as scratch:
        classifiers = {short(name): classifier_for(member) for path in args.models
                       for member, name in split_ensemble(path, Path(scratch))}
        if all(c.info.levels_eyes for c in classifiers.values()):
            faces = as_the_app_feeds(next(iter(classifiers.values())), faces)
        named = {name: probabilities(classifier, faces) for name, classifier in classifiers.items()}
    names = list(named)
    rows = []
    for size in range(max(1, args.smallest), len(names) + 1):
        for subset in itertools.combinations(names, size):
            plain = np.mean([named[n][0] for n in subset], axis=0)
            flipped = (plain + np.mean([named[n][1] for n in subset], axis=0)) / 2
            rows.append((float((plain.argmax(1) == labels).mean()), float((flipped.argmax(1) == labels).mean()),
                         subset))
    rows.sort(key=lambda row: -row[0])
    print(f"PublicTest, {len(labels)} faces\n\n| members | as they are | flip TTA |\n|---|---:|---:|")
    for plain, flipped, subset in rows[:args.top or None]:
        print(f"| {' + '.join(subset)} | {plain:.4f} | {flipped:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
