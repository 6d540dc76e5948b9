"""Building a pipeline from a model path: the one place that knows the shipped defaults."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from fer_emotion.app.core.classifier import EmotionClassifier
from fer_emotion.app.core.detector import DetectorConfig, FaceDetector
from fer_emotion.app.core.pipeline import Pipeline, PipelineConfig
from fer_emotion.app.core.shipped import default_model_path, shipped_or_given


def build_pipeline(model: Path | None = None, config: PipelineConfig = PipelineConfig(),
                   detector_config: DetectorConfig = DetectorConfig(), device: str = "auto",
                   classifier_threads: int | None = 0) -> Pipeline:
    """A ready pipeline; raises ModelLoadError (one line) for a model it cannot use. ``classifier_threads``:
    0 for onnxruntime's choice, None for the live view's (see live_classifier)."""
    path = shipped_or_given(model) if model else default_model_path()
    if classifier_threads is None:
        classifier = live_classifier(path, device)
    else:
        classifier = EmotionClassifier(path, device=device, threads=classifier_threads)
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


# One face's time on one thread (EmotionClassifier.face_ms, at load) above which the live view gives the
# classifier a second thread. On this project's AMD EPYC (Zen 4, two cores; one face on one / two threads: the
# ensemble 10.4 / 6.5 ms, the default 2.1 / 1.3, fer2013_wide 0.75 / 0.6, the fernet files 0.2 / 0.25; fer-bench,
# the app's setting, three rounds, medians) a second thread took the ensemble from 58 to 70 fps on the webcam clip
# and from 11.1 to 13.4 on the crowd clip, fer2013_wide from 135 to 167 on the webcam clip, and left the default as
# it was; fer2013.onnx went from 181 to 156 on the webcam clip.
TWO_THREADS_FROM_MS = 0.5


def live_threads(face_ms: float, cores: int | None = None) -> int:
    """The classifier's CPU threads in the live view for a model taking ``face_ms`` a face on one thread:
    one, or two for a heavy model where there are two cores."""
    cores = cores or os.cpu_count() or 1
    return 2 if cores >= 2 and face_ms > TWO_THREADS_FROM_MS else 1


def live_classifier(path: Path, device: str = "auto") -> EmotionClassifier:
    """A classifier for the live view: opened on one thread and, on the CPU, timed on one face and given a
    second thread if it is heavy (a GPU's session needs no CPU threads of its own)."""
    classifier = EmotionClassifier(path, device=device, threads=1)
    if classifier.device == "CPU" and live_threads(classifier.face_ms()) == 2:
        classifier.set_threads(2)
    return classifier
