"""Building a pipeline from a model path: the one place that knows the shipped defaults."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from fer_emotion.app.core.classifier import EmotionClassifier
from fer_emotion.app.core.detector import DetectorConfig, FaceDetector
from fer_emotion.app.core.pipeline import Pipeline, PipelineConfig
from fer_emotion.app.core.shipped import default_model_path


def build_pipeline(model: Path | None = None, config: PipelineConfig = PipelineConfig(),
                   detector_config: DetectorConfig = DetectorConfig(), device: str = "auto",
                   classifier_threads: int = 0) -> Pipeline:
    """A ready pipeline; raises ModelLoadError (one line) for a model it cannot use."""
    classifier = EmotionClassifier(model or default_model_path(), device=device, threads=classifier_threads)
    threads = detector_config.threads or detector_threads(config, detector_config.backend)
    detector = FaceDetector(replace(detector_config, device=device, threads=threads))
    return Pipeline(detector, classifier, config)


def detector_threads(config: PipelineConfig, backend: str = "onnx", cores: int | None = None) -> int:
    """MTCNN's CPU threads when not given: two, in the frame loop and in the live view's second thread alike.

    With ONNX Runtime's threads sleeping between calls (see open_session) a 1080p detection takes 230 ms on
    two cores against 310 on one, and the frame loop still gets its share: on the crowd clip fed at its own
    rate, background detection found 0.79-0.82 of the faces on two threads against 0.75 on one.
    facenet-pytorch's torch modules are no faster on two."""
    cores = cores or os.cpu_count() or 1
    return 1 if backend != "onnx" else min(2, cores)
