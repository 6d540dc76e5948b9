"""The int8 models' uint8 weights read as int8 (app.core.qdq), and the classifier's choice of session."""

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from fer_emotion.app.core import classifier as classifier_module
from fer_emotion.app.core.classifier import EmotionClassifier, open_session
from fer_emotion.app.core.qdq import signed_weights
from fer_emotion.app.core.shipped import models_folder

MODEL = models_folder() / "fer2013.onnx"  # int8, no TTA: first layer float, the second's weights uint8
OTHER = models_folder() / "fer2013_level.onnx"  # the same labels and input, other weights


def test_uint8_weights_become_int8_with_the_same_numbers():
    before = MODEL.read_bytes()
    after = signed_weights(before)
    assert after is not None and len(after) == len(before)
    old = {t.name: t for t in onnx.load_from_string(before).graph.initializer}
    new = {t.name: t for t in onnx.load_from_string(after).graph.initializer}
    changed = sorted(name for name in old if old[name].SerializeToString() != new[name].SerializeToString())
    assert len(changed) == 2 and all(old[name].data_type == onnx.TensorProto.UINT8 for name in changed)
    for name in changed:  # the weights and their zero point, each moved down by 128
        assert new[name].data_type == onnx.TensorProto.INT8
        shifted = numpy_helper.to_array(old[name]).astype(np.int16) - 128
        np.testing.assert_array_equal(numpy_helper.to_array(new[name]), shifted)
    assert signed_weights(after) is None  # nothing left to convert
    faces = np.random.default_rng(1).normal(0, 1, (8, 1, 48, 48)).astype(np.float32)
    scores = [open_session(model, "cpu", 1, fuse_int8=False).run(None, {"input": faces})[0] for model in (before, after)]
    np.testing.assert_array_equal(scores[0], scores[1])  # the model means what it meant, to the last bit
    assert not np.array_equal(scores[0][0], scores[0][1])


def test_a_float_model_has_nothing_to_convert(tiny_model):
    assert signed_weights(tiny_model.read_bytes()) is None


def test_a_model_with_tensors_in_files_beside_it_is_left_alone(tmp_path):
    path = tmp_path / "external.onnx"  # the larger int8 layers beside it, the uint8 layer (4608 bytes) inside
    onnx.save(onnx.load(MODEL), path, save_as_external_data=True, location="weights.bin", size_threshold=9000)
    assert signed_weights(path.read_bytes()) is None  # a copy in memory would not find weights.bin
    assert EmotionClassifier(path, device="cpu", threads=1).kernels == "int8 (as stored)"


def test_bytes_that_are_not_a_model_are_refused():
    with pytest.raises(ValueError, match="not an ONNX model"):
        signed_weights(b"\x3a\xff\xff\xff")


def scores(session, batch: np.ndarray) -> np.ndarray:
    return classifier_module.softmax(session.run(None, {"input": batch})[0])


FACES = np.random.default_rng(2).integers(0, 256, (6, 48, 48), dtype=np.uint8)


def test_the_classifier_keeps_the_file_as_stored_where_the_signed_copy_disagrees(monkeypatch):
    """A copy whose results are not the model's (here another model's bytes) is never used."""
    monkeypatch.setattr(classifier_module, "signed_weights", lambda model: OTHER.read_bytes())
    classifier = EmotionClassifier(MODEL, device="cpu", threads=1)
    assert classifier.kernels == "int8 (as stored)"
    batch = classifier_module.normalize(FACES, classifier.info.mean, classifier.info.std)
    np.testing.assert_allclose(classifier(FACES), scores(open_session(MODEL, "cpu", 1), batch), atol=1e-6)


def test_a_file_the_copy_cannot_be_made_of_loads_as_stored(monkeypatch):
    def refuse(model: bytes) -> bytes:
        raise ValueError("not an ONNX model")

    monkeypatch.setattr(classifier_module, "signed_weights", refuse)
    assert EmotionClassifier(MODEL, device="cpu", threads=1).kernels == "int8 (as stored)"


def test_the_classifier_runs_unfused_where_no_fused_session_agrees(monkeypatch):
    monkeypatch.setattr(classifier_module, "INT8_TOLERANCE", -1.0)
    classifier = EmotionClassifier(MODEL, device="cpu", threads=1)
    assert classifier.kernels == "unfused (float on int8 weights)"
    batch = classifier_module.normalize(FACES, classifier.info.mean, classifier.info.std)
    exact = open_session(MODEL, "cpu", 1, fuse_int8=False)
    np.testing.assert_allclose(classifier(FACES), scores(exact, batch), atol=1e-6)


def test_a_float_model_runs_as_it_is(tiny_model):
    assert EmotionClassifier(tiny_model, device="cpu").kernels == "float"


def test_a_classifier_given_more_threads_keeps_its_kernels(monkeypatch):
    """set_threads reopens what load chose: the signed copy, the file as stored, or the unfused session."""
    cases = [("int8 (signed weights)", None), ("int8 (as stored)", lambda model: OTHER.read_bytes()),
             ("unfused (float on int8 weights)", None)]
    for kernels, copy in cases:
        with monkeypatch.context() as patch:
            if copy is not None:
                patch.setattr(classifier_module, "signed_weights", copy)
            if kernels.startswith("unfused"):
                patch.setattr(classifier_module, "INT8_TOLERANCE", -1.0)
            classifier = EmotionClassifier(MODEL, device="cpu", threads=1)
            assert classifier.kernels == kernels
            before = classifier(FACES)
            classifier.set_threads(2)
            assert classifier.threads == 2 and classifier.kernels == kernels
            options = classifier._session.get_session_options()
            assert options.intra_op_num_threads == 2
            if kernels.startswith("unfused"):  # fused and unfused agree to 1e-6 on a CPU with VNNI
                assert options.get_session_config_entry("session.disable_quant_qdq") == "1"
            np.testing.assert_allclose(classifier(FACES), before, atol=1e-6)
            assert 0 < classifier.face_ms(repeats=3) < 1000


def test_the_int8_verdict_is_kept_for_the_next_load(monkeypatch, tmp_path):
    cache = tmp_path / "cache" / "int8_kernels.json"
    monkeypatch.setattr(classifier_module, "KERNELS_CACHE", cache)
    first = EmotionClassifier(MODEL, device="cpu", threads=1)
    key = classifier_module.verdict_key(MODEL.read_bytes(), "CPUExecutionProvider")
    assert json.loads(cache.read_text()) == {key: first.kernels}
    assert key != classifier_module.verdict_key(MODEL.read_bytes() + b"\0")  # another file, another verdict
    assert key != classifier_module.verdict_key(MODEL.read_bytes(), "CUDAExecutionProvider")  # another provider

    def no_check(*args):
        raise AssertionError("checked again")

    with monkeypatch.context() as patch:  # the next load takes the verdict without running the check
        patch.setattr(EmotionClassifier, "_exact_int8_session", no_check)
        again = EmotionClassifier(MODEL, device="cpu", threads=1)
        assert again.kernels == first.kernels
        np.testing.assert_allclose(again(FACES), first(FACES), atol=1e-6)
        cache.write_text(json.dumps({key: classifier_module.UNFUSED}))  # and obeys it
        unfused = EmotionClassifier(MODEL, device="cpu", threads=1)
        assert unfused.kernels == classifier_module.UNFUSED
        options = unfused._session.get_session_options()
        assert options.get_session_config_entry("session.disable_quant_qdq") == "1"
        unfused.set_threads(2)
        assert unfused._session.get_session_options().get_session_config_entry("session.disable_quant_qdq") == "1"
    cache.write_text("not json")  # a damaged file: checked again, and written whole
    assert EmotionClassifier(MODEL, device="cpu", threads=1).kernels == first.kernels
    assert json.loads(cache.read_text()) == {key: first.kernels}
    assert [p.name for p in cache.parent.iterdir()] == ["int8_kernels.json"]  # no scratch file left
