"""The speed tables of docs/benchmarks.md (and the README's): the pipeline's levers on the two fixture videos, and ms per face per model.

Run by hand on a quiet machine (nothing else using the CPU), not in the test suite:

    .venv/bin/python benchmarks/speed.py --videos ../shared/fixtures/video_single_face_webcam.mp4 \
        ../shared/fixtures/video_crowd_walking.mp4 --models assets/models/*.onnx

Each pipeline row is one `fer-bench --json --check-recall` run in its own process (so peak memory is its own).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LEVERS = [
    ("full detection every frame", ["--detect-every", "1"]),
    ("full detection every 5th frame", ["--detect-every", "5"]),
    ("full detection every 7th frame", ["--detect-every", "7"]),
    ("full detection every 10th frame", ["--detect-every", "10"]),
    ("every 5th frame, MTCNN's networks in torch", ["--detect-every", "5", "--detector-backend", "torch"]),
    ("second thread, back to back", ["--background", "--detect-every", "1"]),
    ("second thread, every 5th frame at most (the app)", ["--background", "--detect-every", "5"]),
]


def bench(video: Path, options: list[str], model: Path | None) -> dict:
    command = [sys.executable, "-m", "fer_emotion.app.cli.bench", str(video), "--json", "--check-recall", *options]
    if model is not None:
        command += ["--model", str(model)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0:
        raise SystemExit(f"fer-bench failed: {done.stderr.strip()}")
    return json.loads(done.stdout)


def classify_ms(model: Path, threads: int, batch: int = 4, calls: int = 2000) -> float:
    """Median ms per face over ``calls`` batched calls of random faces, after a warm-up."""
    from fer_emotion.app.core.classifier import EmotionClassifier

    classifier = EmotionClassifier(model, device="cpu", threads=threads)
    faces = np.random.default_rng(0).integers(0, 256, (batch, 48, 48), dtype=np.uint8)
    for _ in range(50):
        classifier(faces)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        classifier(faces)
        times.append(time.perf_counter() - started)
    return float(np.median(times)) * 1000 / batch


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=Path, nargs="*", default=[])
    parser.add_argument("--models", type=Path, nargs="*", default=[])
    parser.add_argument("--model", type=Path, help="the model the pipeline rows use (default: the shipped one)")
    args = parser.parse_args()
    if args.videos:
        print("| video | detection | fps | recall | detect ms (median / p95) | classify ms per face | faces per frame | peak RSS MB |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for video in args.videos:
            for name, options in LEVERS:
                r = bench(video, options, args.model)
                detect = r["stages"]["detect"]
                print(f"| {video.name} ({r['size'][0]}x{r['size'][1]}) | {name} | {r['fps']:.1f} | {r['recall']:.3f} | "
                      f"{detect['median_ms']:.1f} / {detect['p95_ms']:.1f} | {r['classify_ms_per_face']:.3f} | "
                      f"{r['faces_per_frame']:.2f} | {r['peak_rss_mb']:.0f} |", flush=True)
    if args.models:
        print("\n| model | ms per face, batch of 4, 1 thread | 2 threads |")
        print("|---|---:|---:|")
        for model in args.models:
            print(f"| {model.name} | {classify_ms(model, 1):.3f} | {classify_ms(model, 2):.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
