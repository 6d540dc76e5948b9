"""Qt fixtures: settings kept in a temporary folder, a window over a fake source, fake frame sources."""

from __future__ import annotations

import numpy as np
import pytest

from fer_emotion.app.core.sources import Frame, SourceError


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path, monkeypatch):
    from PySide6.QtCore import QSettings

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()


def moving_frames(base: np.ndarray, count: int = 1000, fail_after: int | None = None):
    """A fake stream: ``base`` shifting a little each frame; optionally a failure mid-stream."""

    def frames():
        for index in range(count):
            if fail_after is not None and index == fail_after:
                raise SourceError("fake camera: device unplugged")
            yield Frame(np.roll(base, index % 8, axis=1), index, index / 30.0)

    return frames


@pytest.fixture()
def pipeline_factory(detector, classifier):
    from fer_emotion.app.core.pipeline import Pipeline

    return lambda model: Pipeline(detector, classifier)


@pytest.fixture()
def make_window(qtbot, pipeline_factory):
    windows = []

    def make(spec):
        from fer_emotion.app.ui.window import MainWindow

        window = MainWindow(spec, pipeline_factory=pipeline_factory)
        qtbot.addWidget(window)
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.shutdown()
