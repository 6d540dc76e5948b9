"""Every model in assets/models loads as the app loads it, with its card, its emoji and a menu title."""

from pathlib import Path

import numpy as np
import pytest

from fer_emotion.app.core.classifier import EmotionClassifier
from fer_emotion.app.core.crop import crop_faces
from fer_emotion.app.core.drawing import emoji_image
from fer_emotion.app.core.shipped import DEFAULT_MODEL, TITLES, shipped_models
from tests.conftest import ASTRONAUT_FACE, weight_types

MODELS = shipped_models()


def test_the_default_model_is_listed_first():
    assert MODELS and MODELS[0].name == DEFAULT_MODEL


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_shipped_model_is_complete(path, astronaut):
    classifier = EmotionClassifier(path, device="cpu")
    info = classifier.info
    assert path.name in TITLES
    assert path.with_suffix(".md").is_file() and path.with_name(path.stem + "_confusion.png").is_file()
    assert info.metrics and info.dataset and info.arch
    for label in info.labels:
        art = emoji_image(info.emoji[label])
        assert art is not None and art.shape[2] == 4 and art.shape[0] >= 32  # RGBA art for every class
    probs = classifier(crop_faces(astronaut, [ASTRONAUT_FACE], info.input_size, info.crop_margin))
    assert probs.shape == (1, len(info.labels))
    np.testing.assert_allclose(probs.sum(), 1.0, atol=1e-4)


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_shipped_model_gives_its_own_results_on_this_cpu(path, astronaut):
    """The fused int8 kernels for int8 weights saturate on x86 CPUs without VNNI; the shipped files keep the
    layers where it matters in uint8, the classifier reads those as int8 only where that gives the model's
    results, and falls back to the exact (unfused) session where a file still disagrees, so the app's
    probabilities are the model's on every CPU."""
    from fer_emotion.app.core.classifier import INT8_TOLERANCE, open_session, softmax
    from fer_emotion.app.core.crop import normalize

    classifier = EmotionClassifier(path, device="cpu")
    info = classifier.info
    x0, y0, x1, y1 = ASTRONAUT_FACE
    boxes = [(x0 + dx, y0 + dy, x1 + dx + grow, y1 + dy + grow)
             for dx in (-8, 0, 8) for dy in (-8, 0, 8) for grow in (-10, 0, 15)]
    crops = crop_faces(astronaut, boxes, info.input_size, info.crop_margin)
    crops = np.concatenate([crops, crops[:, :, ::-1], 255 - crops])  # mirrored and inverted faces too
    batch = normalize(crops, info.mean, info.std)
    exact = open_session(path, "cpu", 1, fuse_int8=False)
    raw = softmax(exact.run(None, {exact.get_inputs()[0].name: batch})[0])
    expected = raw
    if info.extra.get("tta") == "flip":  # the model asks the app to average each face with its mirror
        mirrored = np.ascontiguousarray(batch[..., ::-1])
        expected = (raw + softmax(exact.run(None, {exact.get_inputs()[0].name: mirrored})[0])) / 2
    assert np.abs(classifier(crops) - expected).mean() <= INT8_TOLERANCE
    fused = open_session(path, "cpu", 1)  # the files themselves are exact under the fast kernels here
    assert np.abs(softmax(fused.run(None, {fused.get_inputs()[0].name: batch})[0]) - raw).mean() <= INT8_TOLERANCE


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_shipped_model_runs_its_first_layer_in_float_where_a_pool_follows_it(path):
    """training.quantize.float_first_layer: onnxruntime's fused kernel for a one-channel convolution is its
    slowest per multiply, so the int8 files keep a first convolution that a max-pool follows in float (its
    dequantised weights). VGG-style nets put a second convolution before the pool and keep theirs int8: on the
    Intel Xeon host fer2013_vgg.onnx took 1.69 ms a face with it in float against 1.68 int8."""
    import onnx

    from fer_emotion.training.quantize import float_first_layer

    model = onnx.load(path)
    assert not float_first_layer(model)  # nothing left that it would convert
    if EmotionClassifier(path, device="cpu").info.arch.startswith("fernet"):
        assert weight_types(model)[0] == onnx.TensorProto.FLOAT
    assert any(node.op_type == "QuantizeLinear" for node in model.graph.node)  # the rest is still int8


ENSEMBLES = [p for p in MODELS if "members" in EmotionClassifier(p, device="cpu").info.extra]


@pytest.mark.parametrize("path", ENSEMBLES, ids=[p.stem for p in ENSEMBLES])
def test_a_shipped_ensemble_holds_the_shipped_members_it_names_weight_for_weight(path):
    """Export checked the ensemble against its members' average; here: a member named after a file that ships
    on its own is that file, inside it unchanged (a shipped file replaced later must not leave its old name in
    an ensemble's metadata)."""
    import json

    import onnx

    from fer_emotion.app.core.shipped import models_folder

    info = EmotionClassifier(path, device="cpu").info
    named = [Path(m["file"]).name for m in json.loads(info.extra["members"])]
    inside = {t.raw_data for t in onnx.load(path).graph.initializer if t.raw_data}
    shipped = [name for name in named if (models_folder() / name).is_file()]
    assert len(named) >= 2
    for name in shipped:
        weights = [t.raw_data for t in onnx.load(models_folder() / name).graph.initializer if len(t.raw_data) > 64]
        assert weights and all(w in inside for w in weights), name


def test_a_bare_shipped_name_means_the_shipped_file_unless_such_a_file_is_here(tmp_path, monkeypatch):
    from fer_emotion.app.core.shipped import models_folder, shipped_or_given

    monkeypatch.chdir(tmp_path)
    assert shipped_or_given(Path("fer2013_ensemble.onnx")) == models_folder() / "fer2013_ensemble.onnx"
    assert shipped_or_given(Path("nothing.onnx")) == Path("nothing.onnx")
    assert shipped_or_given(Path("sub/fer2013.onnx")) == Path("sub/fer2013.onnx")  # a folder was named: kept
    (tmp_path / "fer2013.onnx").write_bytes(b"mine")
    assert shipped_or_given(Path("fer2013.onnx")) == Path("fer2013.onnx")
