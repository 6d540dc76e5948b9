"""The models shipped in ``assets/models``: where they are and what menus call them.

Kept free of torch and onnxruntime so the window can list the models while those still load.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_MODEL = "fer2013_vgg.onnx"
TITLES = {
    "fer2013_vgg.onnx": "Emotions, 7 classes (FER2013)",
    "fer2013_wide.onnx": "Emotions, 7 classes, faster (FER2013; 40% of the default's time, a little less accurate)",
    "fer2013.onnx": "Emotions, 7 classes, fastest (FER2013; a tenth of the default's time, less accurate)",
    "ferplus.onnx": "Emotions, 8 classes with contempt (FER+)",
    "engagement.onnx": "Engagement: angry, bored, focused, neutral",
    "fer2013_level.onnx": "Emotions, 7 classes, for tilted heads (FER2013, eyes levelled)",
    "fer2013_light.onnx": "Emotions, 7 classes, for dim or uneven light (FER2013, relit in training)",
    "fer2013_ensemble.onnx": "Emotions, 7 classes, most accurate (FER2013, several models averaged; slower)",
}


def models_folder() -> Path:
    return Path(str(resources.files("fer_emotion.assets") / "models"))


def shipped_models() -> list[Path]:
    """The .onnx models shipped in ``assets/models``, default first."""
    return sorted(models_folder().glob("*.onnx"), key=lambda p: (p.name != DEFAULT_MODEL, p.name))


def shipped_or_given(path: Path) -> Path:
    """``path`` itself when it exists, else the shipped model of that file name when there is one (so
    ``fer2013_ensemble.onnx`` names the shipped file from any folder), else ``path`` unchanged."""
    path = Path(path)
    shipped = models_folder() / path.name
    return shipped if not path.exists() and path.parent == Path() and shipped.is_file() else path


def missing_model(path: Path) -> str:
    """What to say of a model file that is not there: the shipped models can be named by file name alone."""
    names = ", ".join(p.name for p in shipped_models())
    return f"{path}: no such model file (shipped models, which a file name alone names: {names})"


def default_model_path() -> Path:
    return models_folder() / DEFAULT_MODEL


def title(path: Path) -> str:
    """A menu title for a model file: its description when it is a shipped one, else its file name."""
    return TITLES.get(path.name, path.name) if path.parent == models_folder() else path.name
