"""Preferences that survive a restart, through QSettings, in one place."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

ORGANISATION = "fer-emotion"
APPLICATION = "fer-app"


class Preferences:
    """Typed access to the app's QSettings."""

    def __init__(self, settings: QSettings | None = None) -> None:
        self._settings = settings or QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope,
                                               ORGANISATION, APPLICATION)

    def _get(self, key: str, default, kind):
        value = self._settings.value(key, default)
        try:
            return kind(value) if value is not None else default
        except (TypeError, ValueError):
            return default

    @property
    def mode(self) -> str:
        mode = self._get("overlay/mode", "emoji", str)
        return mode if mode in ("emoji", "label") else "emoji"

    @mode.setter
    def mode(self, value: str) -> None:
        self._settings.setValue("overlay/mode", value)

    @property
    def camera(self) -> int:
        return self._get("source/camera", 0, int)

    @camera.setter
    def camera(self, value: int) -> None:
        self._settings.setValue("source/camera", int(value))

    @property
    def model(self) -> Path | None:
        text = self._get("model/path", "", str)
        return Path(text) if text else None

    @model.setter
    def model(self, value: Path | None) -> None:
        self._settings.setValue("model/path", str(value) if value else "")

    @property
    def last_folder(self) -> Path:
        return Path(self._get("files/last_folder", str(Path.home()), str))

    @last_folder.setter
    def last_folder(self, value: Path) -> None:
        self._settings.setValue("files/last_folder", str(value))

    @property
    def geometry(self) -> QByteArray | None:
        value = self._settings.value("window/geometry")
        return value if isinstance(value, QByteArray) else None

    @geometry.setter
    def geometry(self, value: QByteArray) -> None:
        self._settings.setValue("window/geometry", value)

    def sync(self) -> None:
        self._settings.sync()
