"""FER2013 models against how FER+'s ten annotators saw each PublicTest face.

FER+ (Barsoum et al. 2016) had ten people label every FER2013 face again. This splits PublicTest by the share
of a face's ten votes that went to its FER2013 label and gives each model's accuracy (against the FER2013
label, as everywhere else) on each part. The crowd's most-voted emotion of the seven FER2013 has (contempt,
unknown and not-a-face left out; a plurality, not a majority) is scored the same way as a reference. Run by hand:

    .venv/bin/python benchmarks/label_agreement.py --models assets/models/fer2013.onnx assets/models/fer2013_level.onnx

A model trained on level eyes gets the faces levelled as ``fer-train eval`` levels them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fer_emotion.app.core.classifier import EmotionClassifier  # noqa: E402
from fer_emotion.app.core.shipped import default_model_path  # noqa: E402
from fer_emotion.training.data import read_votes  # noqa: E402
from fer_emotion.training.labels import FER2013, VOTE_COLUMNS, canonical  # noqa: E402

# parts of PublicTest by the share of a face's votes that went to its FER2013 label
PARTS = (("none", lambda share: share == 0), ("under half", lambda share: (share > 0) & (share < 0.5)),
         ("half or more", lambda share: share >= 0.5))
# vote column of each FER2013 class (FER+'s "happiness" is FER2013's "happy", and so on)
VOTE_OF_CLASS = [[canonical(c) for c in VOTE_COLUMNS].index(name) for name in FER2013]


def public_test(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FER2013's PublicTest faces (uint8, N x 48 x 48), their labels, and which of the file's rows they are."""
    with np.load(path) as data:
        rows = data["usage"] == 1
        return np.ascontiguousarray(data["pixels"][rows]), data["emotion"][rows].astype(np.int64), rows


def as_the_app_feeds(classifier: EmotionClassifier, faces: np.ndarray) -> np.ndarray:
    """The faces as the app gives them to this model: eyes levelled where its metadata asks for it."""
    if not classifier.info.levels_eyes:
        return faces
    import torch

    from fer_emotion.training.datasets import level_eyes

    return level_eyes(torch.from_numpy(faces)).numpy()


def model_predictions(path: Path, faces: np.ndarray) -> np.ndarray:
    classifier = EmotionClassifier(path, device="cpu", threads=1)
    if tuple(classifier.labels) != FER2013:
        raise SystemExit(f"{path}: its classes are {', '.join(classifier.labels)}, not FER2013's seven")
    faces = as_the_app_feeds(classifier, faces)
    return np.concatenate([classifier(faces[start:start + 256]).argmax(1) for start in range(0, len(faces), 256)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fer2013.npz")
    parser.add_argument("--ferplus", type=Path, default=REPO.parent / "shared" / "data" / "ferplus.csv")
    parser.add_argument("--models", type=Path, nargs="+", default=[default_model_path()])
    args = parser.parse_args()
    faces, labels, rows = public_test(args.data)
    votes = read_votes(args.ferplus, len(rows))[rows]
    emotion_votes = votes[:, VOTE_OF_CLASS]
    share = emotion_votes[np.arange(len(labels)), labels] / np.maximum(votes.sum(1), 1)
    crowd = np.where(emotion_votes.sum(1) > 0, emotion_votes.argmax(1), -1)  # -1: no vote for any of the seven
    right = {"FER+ crowd's most-voted": crowd == labels}
    names = [path.name for path in args.models]  # a column per model: its file name, its path where names repeat
    right.update({(path.name if names.count(path.name) == 1 else str(path)): model_predictions(path, faces) == labels
                  for path in args.models})
    print(f"FER2013 PublicTest, {len(labels)} faces; accuracy against the FER2013 label, by the share of FER+'s "
          "votes that went to that label")
    print("| votes for the FER2013 label | faces | " + " | ".join(right) + " |")
    print("|---|---:|" + "---:|" * len(right))
    for name, in_part in PARTS:
        part = in_part(share)
        cells = " | ".join(f"{hits[part].mean():.4f}" for hits in right.values())
        print(f"| {name} | {int(part.sum())} ({part.mean():.1%}) | {cells} |")
    print(f"| all | {len(labels)} | " + " | ".join(f"{hits.mean():.4f}" for hits in right.values()) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
