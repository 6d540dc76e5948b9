"""Writing results: annotated images, JSON side-cars, and recordings of a stream (video + CSV)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np

from fer_emotion.app.core.sources import SourceError


def save_image(path: Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise SourceError(f"{path}: could not write the image")


def image_document(source: str, output: Path, result, model_name: str, labels) -> dict:
    """The JSON side-car of one annotated picture (the same for fer-annotate and the app)."""
    height, width = result.image.shape[:2]
    return {
        "input": source, "output": str(output), "width": width, "height": height,
        "model": model_name, "labels": list(labels),
        "faces": [face.to_json() for face in result.faces],
        "timings_ms": {k: round(v, 2) for k, v in result.timings.items()},
    }


def write_json(path: Path, document: dict) -> None:
    path.write_text(json.dumps(document, indent=2) + "\n")


class Recorder:
    """The annotated stream as an MP4 plus a per-frame CSV (time, track id, label, score, probabilities)."""

    def __init__(self, video_path: Path, labels, fps: float, size: tuple[int, int]) -> None:
        self.video_path = video_path
        self.csv_path = video_path.with_suffix(".csv")
        self._writer = cv2.VideoWriter(str(video_path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not self._writer.isOpened():
            raise SourceError(f"{video_path}: cannot write video")
        self._size = size
        self._labels = list(labels)
        self._csv_file = self.csv_path.open("w", newline="")
        self._csv = csv.writer(self._csv_file)
        self._csv.writerow(["frame", "time", "track_id", "label", "score", *self._labels])
        self.frames = 0

    def write(self, result, timestamp: float) -> None:
        image = result.image
        if (image.shape[1], image.shape[0]) != self._size:
            image = cv2.resize(image, self._size)
        self._writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        for face in result.faces:
            self._csv.writerow([self.frames, f"{timestamp:.3f}", face.track_id, face.label, f"{face.score:.4f}",
                                *(f"{face.probs.get(label, 0.0):.4f}" for label in self._labels)])
        self.frames += 1

    def close(self) -> None:
        self._writer.release()
        self._csv_file.close()
