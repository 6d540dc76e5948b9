"""tools/pack_faces.py and tools/gpu_teacher.py: the faces and the weights survive the trip to a GPU machine and back."""

import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import torch

from fer_emotion.training import cli
from fer_emotion.training.checkpoint import load_checkpoint
from fer_emotion.training.datasets import SplitData
from fer_emotion.training.train import restore_generator
from tests.training.test_engine import REPO, train_args


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_packed_faces_unpack_pixel_for_pixel_without_the_withheld_split(tmp_path):
    pack_faces = load_tool("pack_faces")
    rng = np.random.default_rng(0)
    count = pack_faces.TILE * pack_faces.TILE + 10  # two mosaics, the second nearly empty
    usage = rng.integers(0, 3, count).astype(np.int8)
    source = tmp_path / "fer2013.npz"
    np.savez(source, pixels=rng.integers(0, 256, (count, 48, 48), dtype=np.uint8),
             emotion=np.where(usage == 2, -1, rng.integers(0, 7, count)).astype(np.int8), usage=usage,
             flags=rng.integers(0, 4, count).astype(np.uint8))
    assert pack_faces.main(["pack", str(source), str(tmp_path / "faces.npz")]) == 0
    assert pack_faces.main(["unpack", str(tmp_path / "faces.npz"), str(tmp_path / "back.npz")]) == 0
    original, back = np.load(source), np.load(tmp_path / "back.npz")
    kept = original["usage"] < 2
    for name in ("pixels", "emotion", "usage", "flags"):
        assert np.array_equal(back[name], original[name][kept]), name
    with pytest.raises(SystemExit, match="exists"):
        pack_faces.main(["unpack", str(tmp_path / "faces.npz"), str(tmp_path / "back.npz")])


def test_weights_split_for_the_trip_back_rebuild_a_run_that_exports(synthetic, tmp_path, monkeypatch):
    gpu_teacher = load_tool("gpu_teacher")
    run = tmp_path / "run"
    assert cli.main(train_args(synthetic, run, "--epochs", "1", "--arch", "resnet9")) == 0
    monkeypatch.setattr(gpu_teacher, "PART_BYTES", 2**20)  # resnet9 in float16 is 13 MB: several parts
    brought = tmp_path / "out"
    brought.mkdir()
    parts = gpu_teacher.split_weights(run, brought)
    assert len(parts) > 2 and all(p.stat().st_size <= 2**20 for p in parts)
    assert gpu_teacher.main(["fetch", str(brought), str(tmp_path / "back")]) == 0
    original, rebuilt = load_checkpoint(run / "best.pt"), load_checkpoint(tmp_path / "back" / "best.pt")
    assert rebuilt["config"] == original["config"] and rebuilt["epoch"] == original["epoch"]
    for key, value in original["model"].items():
        assert rebuilt["model"][key].dtype == value.dtype
        torch.testing.assert_close(rebuilt["model"][key], value, rtol=1e-3, atol=1e-3)  # float16's rounding
    assert cli.main(["export", str(tmp_path / "back"), "--out", str(tmp_path / "back.onnx")]) == 0
    with pytest.raises(SystemExit, match="exists"):
        gpu_teacher.main(["fetch", str(brought), str(tmp_path / "back")])


def test_the_device_script_runs_the_project_uninstalled(tmp_path):
    """On the GPU machine nothing is installed: a link named fer_emotion to the checkout must be the package."""
    gpu_teacher = load_tool("gpu_teacher")
    env = gpu_teacher.project_env(tmp_path / "scratch")
    env["PYTHONNOUSERSITE"] = "1"
    probe = "import fer_emotion.training.cli as c, pathlib; print(pathlib.Path(c.__file__).resolve())"
    # -S: no site-packages, so the editable install's finder cannot be what finds the package
    done = subprocess.run([sys.executable, "-S", "-c", probe], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(REPO / "training" / "cli.py")


def test_a_split_moves_to_a_device_and_a_generator_from_another_kind_of_device_is_reseeded(caplog):
    split = SplitData(torch.zeros(3, 48, 48, dtype=torch.uint8), torch.arange(3), None)
    assert split.to(torch.device("cpu")) is split
    moved = split.to(torch.device("meta"))
    assert moved.images.device.type == moved.labels.device.type == "meta" and moved.soft is None
    generator = torch.Generator().manual_seed(7)
    expected = torch.rand(3, generator=torch.Generator().manual_seed(7))
    with caplog.at_level("WARNING"):
        restore_generator(generator, torch.zeros(16, dtype=torch.uint8))  # a CUDA generator's state is 16 bytes
    assert "start again from the seed" in caplog.text
    assert torch.equal(torch.rand(3, generator=generator), expected)
