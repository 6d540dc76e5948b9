"""Shared fixtures: a tiny ONNX model with valid metadata, real package-shipped faces, fake sources."""

from __future__ import annotations

import os

if not os.environ.get("QT_QPA_PLATFORM"):
    os.environ["QT_QPA_PLATFORM"] = "offscreen"

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from fer_emotion.app.core.metadata import ModelInfo  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = SHARED / "fixtures"
DATA = SHARED / "data"
LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
# Where MTCNN finds the astronaut's face in skimage.data.astronaut() (x1, y1, x2, y2), measured once.
ASTRONAUT_FACE = (181.1, 62.2, 267.7, 172.1)


@pytest.fixture(autouse=True)
def int8_check_at_every_load(monkeypatch):
    """No int8 verdicts kept between loads in this process: tests change what the check sees (the cache's own
    test points it at a file of its own)."""
    from fer_emotion.app.core import classifier

    monkeypatch.setattr(classifier, "KERNELS_CACHE", None)


def tiny_model_info(**changes) -> ModelInfo:
    values = dict(labels=LABELS, input_size=48, grayscale=True, mean=0.5, std=0.25, crop_margin=0.15,
                  emoji={"happy": "1f604", "sad": "1f622", "angry": "1f620", "neutral": "1f610",
                         "surprise": "1f62e", "fear": "1f628", "disgust": "1f922"},
                  dataset="synthetic", arch="linear", created="2026-01-01T00:00:00+00:00", metrics={"val_acc": 0.0})
    values.update(changes)
    return ModelInfo(**values)


def write_linear_onnx(path: Path, props: dict[str, str] | None, classes: int = 7, size: int = 48, seed: int = 0) -> Path:
    """A linear classifier on 48x48 faces as ONNX (Flatten + Gemm), with ``props`` as metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = numpy_helper.from_array((rng.standard_normal((size * size, classes)) * 0.02).astype(np.float32), "W")
    bias = numpy_helper.from_array(np.zeros(classes, np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1), helper.make_node("Gemm", ["flat", "W", "B"], ["scores"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, size, size])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", classes])],
        initializer=[weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if props:
        helper.set_model_props(model, props)
    onnx.save(model, path)
    return path


def weight_types(model) -> list[int]:
    """The stored type (onnx.TensorProto) of each Conv/Gemm layer's weights, quantised or float, in graph order."""
    types = {t.name: t.data_type for t in model.graph.initializer}
    producers = {node.output[0]: node for node in model.graph.node}
    layers = [node for node in model.graph.node if node.op_type in ("Conv", "Gemm")]
    return [types[producers[node.input[1]].input[0] if node.input[1] in producers else node.input[1]]
            for node in layers]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return write_linear_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx", tiny_model_info().to_props())


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def grace_hopper() -> np.ndarray:
    import matplotlib.cbook

    from fer_emotion.app.core.sources import read_image

    return read_image(Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))


@pytest.fixture(scope="session")
def detector():
    import torch

    from fer_emotion.app.core.detector import FaceDetector

    torch.set_num_threads(1)
    return FaceDetector()


@pytest.fixture(scope="session")
def classifier(tiny_model):
    from fer_emotion.app.core.classifier import EmotionClassifier

    return EmotionClassifier(tiny_model, device="cpu")


@pytest.fixture()
def pipeline(detector, classifier):
    from fer_emotion.app.core.pipeline import Pipeline

    return Pipeline(detector, classifier)


@pytest.fixture()
def pipeline_shipped(detector):
    """The pipeline with the model the app ships."""
    from fer_emotion.app.core.classifier import EmotionClassifier
    from fer_emotion.app.core.shipped import default_model_path
    from fer_emotion.app.core.pipeline import Pipeline

    return Pipeline(detector, EmotionClassifier(default_model_path(), device="cpu"))


@pytest.fixture()
def fixtures_dir() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"{FIXTURES} is absent: the real-photo acceptance tests need ../shared/fixtures")
    return FIXTURES


@pytest.fixture()
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"{DATA} is absent: this test needs ../shared/data")
    return DATA
