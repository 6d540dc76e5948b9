"""How the app's framing of a face changes a model's accuracy: the margin its crop adds around the detected
box, and heads that tilt. FER2013 PublicTest faces go through the app's own detector, crop and classifier.

Each 48x48 face is enlarged 3x (144 px), framed by its own mirror image (288 px) and, for a tilt, the frame
turned about its centre, half the faces one way and half the other; MTCNN finds the face (the detection
nearest the centre), its crop is cut as the pipeline cuts it (turned upright by the eyes' roll for a model
trained on level eyes, metadata ``align`` = ``eyes``) with the model's margin or each of ``--margins``, and
classified. A margin shows the mirrored frame, not the photo's real surroundings, so it measures how far a
margin moves the face away from the scale the model was trained at, not how real context reads. Run by
hand (not part of the test suite):

    .venv/bin/python benchmarks/framing.py --models assets/models/fer2013_wide.onnx --margins 0 0.15 --angles 0 15 30
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fer_emotion.app.core.classifier import EmotionClassifier  # noqa: E402
from fer_emotion.app.core.crop import crop_faces  # noqa: E402
from fer_emotion.app.core.detector import DetectorConfig, FaceDetector  # noqa: E402
from fer_emotion.app.core.shipped import default_model_path  # noqa: E402
from fer_emotion.training.reframe import central, framed  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fer2013.npz")
    parser.add_argument("--models", type=Path, nargs="+", default=[default_model_path()])
    parser.add_argument("--angles", type=float, nargs="+", default=[0, 15, 30])
    parser.add_argument("--margins", type=float, nargs="+", help="crop margins to try (default: each model's own)")
    parser.add_argument("--limit", type=int, default=0, help="the first N PublicTest faces only (0: all)")
    args = parser.parse_args()
    with np.load(args.data) as data:
        rows = np.flatnonzero(data["usage"] == 1)  # PublicTest
        if args.limit:
            rows = rows[:args.limit]
        faces, labels = data["pixels"][rows], data["emotion"][rows].astype(np.int64)
    detector = FaceDetector(DetectorConfig(threads=1))
    classifiers = [EmotionClassifier(path, device="cpu", threads=1) for path in args.models]
    signs = np.where(np.arange(len(faces)) % 2 == 0, 1.0, -1.0)
    margins = args.margins or [None]
    print(f"FER2013 PublicTest, {len(faces)} faces, each turned by the angle (half each way); per model, accuracy "
          "on the faces MTCNN found, then on all faces (a face missed counts as wrong)")
    print("| angle | margin | faces found | " + " | ".join(path.name for path in args.models) + " |")
    print("|---:|---:|---:|" + "---:|" * len(args.models))
    for angle in args.angles:
        found = [central(detector.detect(framed(face, angle * sign)), face.shape[0])
                 for face, sign in zip(faces, signs)]
        seen = [(index, detection) for index, detection in enumerate(found) if detection is not None]
        for margin in margins:
            scores = []
            for classifier in classifiers:
                info = classifier.info
                own = info.crop_margin if margin is None else margin
                right = 0
                for index, detection in seen:  # frames made again: all of them would take ~0.9 GB
                    rolls = [detection.roll] if info.levels_eyes else None
                    frame = framed(faces[index], angle * signs[index])
                    crop = crop_faces(frame, [detection.box], info.input_size, own, rolls)
                    right += int(classifier(crop)[0].argmax() == labels[index])
                scores.append(f"{right / max(len(seen), 1):.4f} / {right / len(faces):.4f}")
            shown = "model's" if margin is None else f"{margin:g}"
            print(f"| {angle:g} | {shown} | {len(seen) / len(faces):.3f} | " + " | ".join(scores) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
