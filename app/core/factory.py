"""Building a pipeline from a model path: the one place that knows the shipped defaults."""

from __future__ import annotations

from dataclasses import replace
from importlib import resources
from pathlib import Path

from app.core.classifier import EmotionClassifier
from app.core.detector import DetectorConfig, FaceDetector
from app.core.pipeline import Pipeline, PipelineConfig

DEFAULT_MODEL = "fer2013.onnx"


def shipped_models() -> list[Path]:
    """The .onnx models shipped in ``assets/models``, default first."""
    folder = resources.files("assets") / "models"
    models = sorted((Path(str(f)) for f in folder.iterdir() if f.name.endswith(".onnx")),
                    key=lambda p: (p.name != DEFAULT_MODEL, p.name))
    return models


def default_model_path() -> Path:
    return Path(str(resources.files("assets") / "models" / DEFAULT_MODEL))


def build_pipeline(model: Path | None = None, config: PipelineConfig = PipelineConfig(),
                   detector_config: DetectorConfig = DetectorConfig(), device: str = "auto",
                   classifier_threads: int = 0) -> Pipeline:
    """A ready pipeline; raises ModelLoadError (one line) for a model it cannot use."""
    classifier = EmotionClassifier(model or default_model_path(), device=device, threads=classifier_threads)
    detector = FaceDetector(replace(detector_config, device=device))
    return Pipeline(detector, classifier, config)
