"""FER2013 models on PublicTest faces lit differently: darker, brighter, flatter or harsher than FER2013's.

A webcam in a dim room or against a window gives faces darker or flatter than most of FER2013's, and the app
feeds the classifier the crop's pixels as they are. This scales each face's spread about its own mean by a
contrast factor, then all its pixels by a brightness factor (clipped to 0-255 and rounded, as a camera would
store them), and scores each model against the FER2013 labels, through the app's classifier. Faces of a model
trained on level eyes are levelled first, as in ``benchmarks/label_agreement.py``. Run by hand:

    .venv/bin/python benchmarks/lighting.py --models assets/models/fer2013*.onnx
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fer_emotion.app.core.shipped import default_model_path  # noqa: E402
from benchmarks.label_agreement import model_predictions, public_test  # noqa: E402

# (name, brightness factor, contrast factor)
LIGHTING = (("as is", 1.0, 1.0), ("dim x0.7", 0.7, 1.0), ("dark x0.5", 0.5, 1.0), ("bright x1.3", 1.3, 1.0),
            ("flat x0.5", 1.0, 0.5), ("harsh x1.5", 1.0, 1.5), ("dark and flat x0.6", 0.6, 0.6))


def relit(faces: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    pixels = faces.astype(np.float32)
    mean = pixels.mean((1, 2), keepdims=True)
    return np.clip(((pixels - mean) * contrast + mean) * brightness, 0, 255).round().astype(np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fer2013.npz")
    parser.add_argument("--models", type=Path, nargs="+", default=[default_model_path()])
    args = parser.parse_args()
    faces, labels, _ = public_test(args.data)
    names = [path.name for path in args.models]  # a row per model: its file name, its path where names repeat
    print(f"FER2013 PublicTest, {len(labels)} faces; accuracy against the FER2013 label, by lighting "
          "(contrast about each face's mean, then brightness)")
    print("| model | " + " | ".join(name for name, _, _ in LIGHTING) + " |")
    print("|---|" + "---:|" * len(LIGHTING))
    for path in args.models:
        scores = [(model_predictions(path, relit(faces, b, c)) == labels).mean() for _, b, c in LIGHTING]
        label = path.name if names.count(path.name) == 1 else str(path)
        print(f"| {label} | " + " | ".join(f"{score:.4f}" for score in scores) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
