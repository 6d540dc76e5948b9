"""Building a pipeline from a model path: the one place that knows the shipped defaults."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from app.core.classifier import EmotionClassifier
from app.core.detector import DetectorConfig, FaceDetector
from app.core.pipeline import Pipeline, PipelineConfig
from app.core.shipped import default_model_path


def build_pipeline(model: Path | None = None, config: PipelineConfig = PipelineConfig(),
                   detector_config: DetectorConfig = DetectorConfig(), device: str = "auto",
                   classifier_threads: int = 0) -> Pipeline:
    """A ready pipeline; raises ModelLoadError (one line) for a model it cannot use."""
    classifier = EmotionClassifier(model or default_model_path(), device=device, threads=classifier_threads)
    detector = FaceDetector(replace(detector_config, device=device))
    return Pipeline(detector, classifier, config)
