import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from fer_emotion.app.core.classifier import EmotionClassifier
from fer_emotion.models import create_model
from tests.conftest import weight_types
from tests.training.conftest import plateau_cuts_follow_validation
from fer_emotion.training import cli
from fer_emotion.training.export import ExportError, export_model, model_info
from fer_emotion.training.metrics import confusion_matrix, report

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained_run(synthetic, tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "run"
    args = ["train", "--data", str(synthetic["csv"]), "--out", str(run), "--epochs", "3", "--batch-size", "8",
            "--lr", "0.02", "--no-progress", "--threads", "1"]
    assert cli.main(args) == 0
    return run


def test_exported_model_carries_metadata_and_loads_in_the_app(trained_run):
    classifier = EmotionClassifier(trained_run / "model.onnx", device="cpu")
    info = classifier.info
    assert info.labels == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
    assert info.input_size == 48 and info.arch == "fernet" and info.emoji["happy"] == "1f604"
    assert "val_acc" in info.metrics and info.created
    model = onnx.load(trained_run / "model.onnx")
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_export_command_reports_parity_and_refuses_to_overwrite(trained_run, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert cli.main(["export", str(trained_run / "best.pt"), "--out", str(out)]) == 0
    difference = float(capsys.readouterr().out.split("difference")[-1])
    assert difference < 1e-4
    with pytest.raises(SystemExit, match="exists"):
        cli.main(["export", str(trained_run / "best.pt"), "--out", str(out)])


def test_export_refuses_a_model_that_disagrees(trained_run, tmp_path, monkeypatch):
    from fer_emotion.training import export
    from fer_emotion.training.checkpoint import load_checkpoint

    state = load_checkpoint(trained_run / "best.pt")
    model = create_model("fernet", 7)
    model.load_state_dict(state["model"])
    monkeypatch.setattr(export, "parity", lambda *a: 0.5)
    with pytest.raises(ExportError, match="disagree"):
        export_model(model, model_info(state), tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_onnx_and_checkpoint_evaluate_alike(trained_run, synthetic, tmp_path, capsys):
    base = ["eval", "--data", str(synthetic["csv"]), "--split", "val"]
    assert cli.main([*base, "--model", str(trained_run / "best.pt")]) == 0
    from_checkpoint = capsys.readouterr().out.splitlines()[0]
    assert cli.main([*base, "--model", str(trained_run / "model.onnx"), "--out", str(tmp_path / "ev"), "--tta", "flip"]) == 0
    assert cli.main([*base, "--model", str(trained_run / "model.onnx")]) == 0
    from_onnx = capsys.readouterr().out.splitlines()[-len(from_checkpoint.splitlines()) - 8]
    assert from_onnx.split("(")[0] == from_checkpoint.split("(")[0]
    written = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert written["count"] == 14 and (tmp_path / "ev" / "confusion.png").stat().st_size > 1000


def test_eval_vote_rule_is_for_ferplus_only(trained_run, synthetic):
    with pytest.raises(SystemExit, match="--vote-rule majority is for scheme ferplus, not fer2013"):
        cli.main(["eval", "--data", str(synthetic["csv"]), "--model", str(trained_run / "model.onnx"),
                  "--vote-rule", "majority"])


def test_metrics_against_a_hand_checked_confusion_matrix():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predictions = np.array([0, 0, 1, 1, 2, 2])
    matrix = confusion_matrix(labels, predictions, 3)
    assert matrix.tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    result = report(matrix, ["a", "b", "c"])
    assert result["accuracy"] == pytest.approx(4 / 6)
    # precision: a 2/2, b 1/2, c 1/2; recall: a 2/3, b 1/2, c 1/1
    assert result["macro_precision"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert result["macro_recall"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    f1 = [2 * 1 * (2 / 3) / (1 + 2 / 3), 0.5, 2 * 0.5 / 1.5]
    assert result["macro_f1"] == pytest.approx(sum(f1) / 3)


def test_two_process_gloo_ddp_smoke(synthetic, tmp_path):
    run = tmp_path / "ddp"
    # the plateau schedule: the main process's validation accuracy is broadcast to the other each epoch (a
    # process left out of the broadcast would hang the run) and its rate follows the rule
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29531",
               "-m", "fer_emotion.training.cli", "train", "--data", str(synthetic["csv"]), "--out", str(run), "--epochs", "3",
               "--batch-size", "8", "--no-progress", "--threads", "1", "--schedule", "plateau",
               "--plateau-patience", "0", "--lr", "1e-7"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (run / "model.onnx").exists()
    with (run / "metrics.csv").open() as handle:
        assert len(handle.read().strip().splitlines()) == 4  # one process wrote one row an epoch
    assert plateau_cuts_follow_validation(run, 0.5) >= 1


def test_int8_export_keeps_metadata_and_agrees(trained_run, tmp_path):
    out = tmp_path / "int8.onnx"
    assert cli.main(["export", str(trained_run / "best.pt"), "--out", str(out), "--int8"]) == 0
    classifier = EmotionClassifier(out, device="cpu")
    assert classifier.info.extra["precision"] == "int8" and classifier.info.arch == "fernet"
    model = onnx.load(out)
    assert any(node.op_type == "QuantizeLinear" for node in model.graph.node)
    assert weight_types(model) == [onnx.TensorProto.FLOAT, onnx.TensorProto.UINT8] + [onnx.TensorProto.INT8] * 7


def test_float_first_layer_keeps_the_model_exactly(trained_run, tmp_path, monkeypatch):
    """The first layer as a float convolution on its dequantised weights, pooled before quantising: the
    unfused session gives the same scores to the last bit, the fused one stays within the app's tolerance."""
    from fer_emotion.app.core.classifier import INT8_TOLERANCE, open_session, softmax
    from fer_emotion.training import quantize

    convert = quantize.float_first_layer
    monkeypatch.setattr(quantize, "float_first_layer", lambda model: False)
    before, after = tmp_path / "before.onnx", tmp_path / "after.onnx"
    assert cli.main(["export", str(trained_run / "best.pt"), "--out", str(before), "--int8"]) == 0
    model = onnx.load(before)
    assert weight_types(model)[0] == onnx.TensorProto.UINT8
    assert convert(model) and not convert(model)  # a second call finds nothing left to do
    assert weight_types(model)[:2] == [onnx.TensorProto.FLOAT, onnx.TensorProto.UINT8]
    onnx.checker.check_model(model)
    onnx.save(model, after)
    faces = np.random.default_rng(1).normal(0, 1, (8, 1, 48, 48)).astype(np.float32)
    exact = [open_session(path, "cpu", 1, fuse_int8=False).run(None, {"input": faces})[0] for path in (before, after)]
    np.testing.assert_array_equal(exact[0], exact[1])
    assert not np.array_equal(exact[0][0], exact[0][1])  # the faces do get different scores
    fused = open_session(after, "cpu", 1).run(None, {"input": faces})[0]
    assert np.abs(softmax(fused) - softmax(exact[0])).mean() <= INT8_TOLERANCE


def test_unsigned_weights_keep_the_model_exactly(trained_run, tmp_path):
    """uint8 weights with zero point 128 are the int8 weights' own numbers: the unfused session (float
    convolutions on the dequantised weights) gives the same scores to the last bit."""
    from fer_emotion.app.core.classifier import open_session
    from fer_emotion.app.core.qdq import signed_weights
    from fer_emotion.training.quantize import unsigned_weights

    signed, unsigned = tmp_path / "signed.onnx", tmp_path / "unsigned.onnx"
    assert cli.main(["export", str(trained_run / "best.pt"), "--out", str(signed), "--int8"]) == 0
    model = onnx.load(signed)
    assert unsigned_weights(model) == 7  # fernet: 8 convolutions and a linear layer; the first float, one uint8
    assert unsigned_weights(model) == 0
    onnx.save(model, unsigned)
    faces = np.random.default_rng(1).normal(0, 1, (8, 1, 48, 48)).astype(np.float32)
    scores = [open_session(path, "cpu", 1, fuse_int8=False).run(None, {"input": faces})[0]
              for path in (signed, unsigned)]
    np.testing.assert_array_equal(scores[0], scores[1])
    assert not np.array_equal(scores[0][0], scores[0][1])  # the faces do get different scores
    # the app's way back (on the file's bytes) makes every layer int8, the export's uint8 layer too
    restored = onnx.load_from_string(signed_weights(unsigned.read_bytes()))
    assert weight_types(restored) == [onnx.TensorProto.FLOAT] + [onnx.TensorProto.INT8] * 8
    for ours, theirs in zip(restored.graph.initializer, onnx.load(signed).graph.initializer, strict=True):
        values, expected = numpy_helper.to_array(ours), numpy_helper.to_array(theirs)
        if theirs.data_type == onnx.TensorProto.UINT8 and ours.data_type == onnx.TensorProto.INT8:
            values, expected = values.astype(np.int16), expected.astype(np.int16) - 128
        np.testing.assert_array_equal(values, expected)


def test_a_run_on_level_eyes_asks_the_app_and_eval_for_them(synthetic, tmp_path, monkeypatch, capsys):
    from fer_emotion.training import evaluate

    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(synthetic["csv"]), "--out", str(run), "--epochs", "1", "--batch-size", "8",
                     "--align", "eyes", "--no-progress", "--threads", "1"]) == 0
    assert json.loads((run / "config.json").read_text())["align"] == "eyes"
    assert EmotionClassifier(run / "model.onnx", device="cpu").info.extra["align"] == "eyes"
    levelled = []
    monkeypatch.setattr(evaluate, "level_eyes", lambda images: levelled.append(len(images)) or images)
    for model in (run / "best.pt", run / "model.onnx"):
        assert cli.main(["eval", "--data", str(synthetic["csv"]), "--model", str(model)]) == 0
    assert levelled == [14, 14]


def test_eval_reports_the_flip_tta_a_model_does_itself(trained_run, synthetic, tmp_path):
    flipping = tmp_path / "flipping.onnx"
    assert cli.main(["export", str(trained_run / "best.pt"), "--out", str(flipping), "--tta", "flip"]) == 0
    base = ["eval", "--data", str(synthetic["csv"]), "--split", "val"]
    reports = {}
    for name, model, extra in (("own", flipping, []), ("asked", trained_run / "model.onnx", ["--tta", "flip"]),
                               ("both", flipping, ["--tta", "flip"])):
        assert cli.main([*base, "--model", str(model), "--out", str(tmp_path / name), *extra]) == 0
        reports[name] = json.loads((tmp_path / name / "report.json").read_text())
    assert {r["tta"] for r in reports.values()} == {"flip"}  # the model's own flip is reported as flip
    assert reports["own"]["confusion_matrix"] == reports["asked"]["confusion_matrix"] == reports["both"]["confusion_matrix"]


def test_eval_takes_a_shipped_model_by_its_file_name(synthetic, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    from fer_emotion.app.core.shipped import models_folder

    assert cli.main(["eval", "--data", str(synthetic["csv"]), "--split", "val", "--model", "fer2013.onnx",
                     "--out", "ev"]) == 0
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["model"] == str(models_folder() / "fer2013.onnx") and report["tta"] == "none"
