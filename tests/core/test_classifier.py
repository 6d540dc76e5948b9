import numpy as np
import pytest

from fer_emotion.app.core.classifier import EmotionClassifier, ModelLoadError, choose_providers
from tests.conftest import LABELS, tiny_model_info, write_linear_onnx


def test_batched_probabilities(classifier):
    crops = np.random.default_rng(0).integers(0, 255, (5, 48, 48), dtype=np.uint8)
    probs = classifier(crops)
    assert probs.shape == (5, len(LABELS))
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert classifier.labels == LABELS


def test_no_faces_give_an_empty_result(classifier):
    assert classifier(np.empty((0, 48, 48), np.uint8)).shape == (0, len(LABELS))


def test_provider_is_reported_and_cpu_without_gpu(classifier):
    assert classifier.provider == "CPUExecutionProvider"
    assert classifier.device == "CPU"
    assert choose_providers("cpu") == ["CPUExecutionProvider"]


def test_model_without_metadata_is_refused_with_a_fix(tmp_path):
    path = write_linear_onnx(tmp_path / "bare.onnx", None)
    with pytest.raises(ModelLoadError, match="no labels.*fer-train export"):
        EmotionClassifier(path, device="cpu")


def test_metadata_that_contradicts_the_graph_is_refused(tmp_path):
    path = write_linear_onnx(tmp_path / "eight.onnx", tiny_model_info().to_props(), classes=8)
    with pytest.raises(ModelLoadError, match="does not match 7 labels"):
        EmotionClassifier(path, device="cpu")


def test_missing_and_broken_files_are_refused(tmp_path):
    with pytest.raises(ModelLoadError, match="no such model"):
        EmotionClassifier(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match="not a readable ONNX model"):
        EmotionClassifier(junk)


def test_flip_tta_from_metadata_averages_a_face_with_its_mirror(tmp_path):
    plain = EmotionClassifier(write_linear_onnx(tmp_path / "a.onnx", tiny_model_info().to_props()), device="cpu")
    props = tiny_model_info(extra={"tta": "flip"}).to_props()
    flipping = EmotionClassifier(write_linear_onnx(tmp_path / "b.onnx", props), device="cpu")
    crops = np.random.default_rng(1).integers(0, 255, (3, 48, 48), dtype=np.uint8)
    expected = (plain(crops) + plain(np.ascontiguousarray(crops[:, :, ::-1]))) / 2
    np.testing.assert_allclose(flipping(crops), expected, rtol=1e-5, atol=1e-6)


@pytest.fixture
def pretend_gpu(monkeypatch):
    """A machine whose CUDA driver reports ``count`` GPUs, with nothing said yet and no libraries preloaded."""
    import onnxruntime as ort

    from fer_emotion.app.core import classifier

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA provider to fall back from")
    if classifier.cuda_device_count() > 0:
        pytest.skip("a real GPU is here: CUDA may well start")
    monkeypatch.setattr(classifier, "_WARNED", set())
    monkeypatch.setattr(ort, "preload_dlls", lambda *a, **k: None, raising=False)
    classifier.cuda_status.cache_clear()
    yield lambda count: monkeypatch.setattr(classifier, "cuda_device_count", lambda: count)
    classifier.cuda_status.cache_clear()


def test_cuda_asked_for_without_a_gpu_runs_on_the_cpu_and_says_why_once(pretend_gpu, tiny_model, caplog, capfd):
    pretend_gpu(0)
    for _ in range(2):
        assert EmotionClassifier(tiny_model, device="cuda").provider == "CPUExecutionProvider"
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == [
        "CUDA was asked for, but no NVIDIA GPU or driver was found; running on the CPU"]
    assert capfd.readouterr().err == ""


def test_cuda_that_cannot_start_falls_back_to_the_cpu_in_one_line(pretend_gpu, tiny_model, caplog, capfd):
    pretend_gpu(1)  # a driver that sees a GPU, but (here) none of the CUDA libraries onnxruntime-gpu loads
    assert choose_providers("auto") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    for _ in range(2):
        assert EmotionClassifier(tiny_model, device="auto").device == "CPU"
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith("onnxruntime could not start CUDA")
    assert "onnxruntime" not in capfd.readouterr().err  # none of its own error lines with C++ source locations
