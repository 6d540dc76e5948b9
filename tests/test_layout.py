"""The house rules on imports: app never imports training/models; app.core never imports Qt; everything is
imported through the one installed namespace, fer_emotion."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def files_under(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package, forbidden", [
    ("app", ("fer_emotion.training", "fer_emotion.models")),
    ("app/core", ("PySide6", "fer_emotion.app.ui")),
    ("training", ("fer_emotion.app.ui", "PySide6")),
    ("models", ("fer_emotion.app", "fer_emotion.training", "PySide6")),
    # the folders install as fer_emotion.app, ...: a bare name would only work from a checkout
    *((folder, ("app", "models", "training", "assets")) for folder in ("app", "models", "training", "tests", "benchmarks")),
])
def test_import_direction(package, forbidden):
    offenders = [
        f"{path.relative_to(REPO)} imports {name}"
        for path in files_under(package)
        for name in imported_modules(path)
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    ]
    assert offenders == []


def test_only_the_adapters_touch_the_engines():
    engines = {"facenet_pytorch": ["app/core/mtcnn.py"], "onnxruntime": ["app/core/classifier.py"]}
    for engine, adapters in engines.items():
        users = [str(p.relative_to(REPO)) for p in files_under("app") if engine in imported_modules(p)]
        assert users == adapters
