"""The built wheel, installed into a fresh environment: one import namespace, an app install without PyTorch,
and console scripts that work from there."""

import json
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TRAINING_ONLY = ("torch", "torchvision", "facenet-pytorch", "scikit-image", "matplotlib", "onnx", "onnxscript")
# what those install in site-packages, left out of the fresh environment's borrowed packages
TRAINING_MODULES = ("torch", "torchgen", "functorch", "torchvision", "torchvision.libs", "facenet_pytorch", "triton",
                    "skimage", "scipy", "scipy.libs", "matplotlib", "mpl_toolkits", "pylab.py", "onnx", "onnx_ir",
                    "onnxscript")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(folder), str(REPO)], check=True, capture_output=True)
    (built,) = folder.glob("fer_emotion-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_env(wheel, tmp_path_factory) -> Path:
    """A new venv with only the wheel installed in it. The app's dependencies are borrowed from this
    environment (links to its site-packages entries, less the [train] extra's and this checkout's editable
    install), named by a .pth file, so nothing is downloaded."""
    root = tmp_path_factory.mktemp("env")
    env, borrowed = root / "venv", root / "app_dependencies"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install", "--quiet",
                    "--no-deps", str(wheel)], check=True, capture_output=True)
    borrowed.mkdir()
    for entry in Path(sysconfig.get_path("purelib")).iterdir():
        if entry.name not in TRAINING_MODULES and not entry.name.startswith(("__editable__", "fer_emotion")):
            (borrowed / entry.name).symlink_to(entry)
    site = Path(subprocess.run([str(env / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "app_dependencies.pth").write_text(f"{borrowed}\n")
    return env


def run_in(env: Path, *command: str, cwd: Path, with_training: bool = False) -> subprocess.CompletedProcess:
    """``command`` in ``env``; ``with_training``: with the [train] extra's packages too (this environment's)."""
    variables = {"PATH": f"{env / 'bin'}:/usr/bin:/bin", "QT_QPA_PLATFORM": "offscreen", "HOME": str(cwd)}
    if with_training:
        variables["PYTHONPATH"] = sysconfig.get_path("purelib")
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, env=variables)


def test_the_wheel_holds_one_top_level_package_and_leaves_pytorch_to_the_train_extra(wheel):
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
        metadata = next(archive.read(n).decode() for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        names = archive.namelist()
    assert {top for top in tops if not top.endswith(".dist-info")} == {"fer_emotion"}
    assert "fer_emotion/assets/models/fer2013.onnx" in names and "fer_emotion/assets/mtcnn/pnet.onnx" in names
    requires = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    core = {distribution(r) for r in requires if "extra ==" not in r}
    train = {distribution(r) for r in requires if 'extra == "train"' in r}
    assert not core & set(TRAINING_ONLY) and set(TRAINING_ONLY) <= train, (core, train)
    assert {"numpy", "onnxruntime-gpu", "pyside6-essentials", "opencv-python-headless"} <= core


def distribution(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9._-]+", requirement)[0].lower()


def test_installed_it_has_no_bare_app_models_or_training_and_its_commands_work(fresh_env, tmp_path, astronaut):
    import cv2

    for name in ("app", "models", "training", "assets"):
        found = run_in(fresh_env, "python", "-c", f"import {name}", cwd=tmp_path)
        assert found.returncode != 0 and "ModuleNotFoundError" in found.stderr, name
    where = run_in(fresh_env, "python", "-c", "import fer_emotion.app.core.pipeline as p; print(p.__file__)", cwd=tmp_path)
    assert str(fresh_env) in where.stdout and str(REPO) not in where.stdout
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    annotated = run_in(fresh_env, "fer-annotate", str(photo), "--out", str(tmp_path / "out"), "--json", cwd=tmp_path)
    assert annotated.returncode == 0, annotated.stderr
    (face,) = json.loads((tmp_path / "out" / "astronaut.json").read_text())["faces"]
    assert face["label"] in face["probs"] and face["detector_score"] > 0.99
    for command in ("fer-app", "fer-bench"):
        shown = run_in(fresh_env, command, "--help", cwd=tmp_path)
        assert shown.returncode == 0 and "usage:" in shown.stdout, command
    bench = run_in(fresh_env, "fer-bench", "--frames", "3", cwd=tmp_path)
    assert bench.returncode == 1 and "pip install 'fer-emotion[train]'" in bench.stderr
    assert run_in(fresh_env, "python", "-c", "import torch", cwd=tmp_path).returncode != 0
    models = run_in(fresh_env, "fer-train", "models", cwd=tmp_path, with_training=True)
    assert models.returncode == 0 and "fernet" in models.stdout.split()
