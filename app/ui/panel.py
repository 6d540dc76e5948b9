"""The side panel: probability bars for the selected face and a timeline of its recent emotions."""

from __future__ import annotations

from collections import deque

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from fer_emotion.app.core.drawing import colour_for

TIMELINE_LENGTH = 150  # frames kept per face


class ProbabilityBars(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.labels: tuple[str, ...] = ()
        self.probs: dict[str, float] = {}
        self.setMinimumHeight(180)

    def set_values(self, labels: tuple[str, ...], probs: dict[str, float]) -> None:
        self.labels, self.probs = labels, probs
        self.setMinimumHeight(26 * max(len(labels), 1) + 8)
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802
        painter = QPainter(self)
        row = 26
        name_width = 80
        for index, label in enumerate(self.labels):
            value = self.probs.get(label, 0.0)
            top = 4 + index * row
            painter.setPen(self.palette().windowText().color())
            painter.drawText(QRectF(0, top, name_width - 6, row - 6),
                             Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, label)
            track = QRectF(name_width, top + 3, self.width() - name_width - 50, row - 12)
            painter.fillRect(track, QColor(60, 60, 66))
            painter.fillRect(QRectF(track.x(), track.y(), track.width() * value, track.height()),
                             QColor(*colour_for(index)))
            painter.drawText(QRectF(track.right() + 4, top, 46, row - 6), Qt.AlignmentFlag.AlignVCenter, f"{value:.0%}")
        painter.end()


class Timeline(QWidget):
    """Recent labels of one face as a strip of colours, oldest on the left."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.entries: list[int] = []
        self.setMinimumHeight(26)

    def set_entries(self, entries: list[int]) -> None:
        self.entries = entries
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(40, 40, 46))
        if self.entries:
            step = self.width() / TIMELINE_LENGTH
            start = self.width() - len(self.entries) * step
            for index, label in enumerate(self.entries):
                painter.fillRect(QRectF(start + index * step, 0, step + 0.5, self.height()), QColor(*colour_for(label)))
        painter.end()


class FacePanel(QWidget):
    """Bars and timeline for one face: the clicked one, else the largest."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.title = QLabel("No face")
        self.bars = ProbabilityBars()
        self.timeline = Timeline()
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.bars)
        layout.addWidget(QLabel("Recent emotions"))
        layout.addWidget(self.timeline)
        layout.addStretch(1)
        self.setMinimumWidth(260)
        self._history: dict[int, deque[int]] = {}

    def update_faces(self, faces, labels: tuple[str, ...], selected: int | None) -> int | None:
        """Record this frame's labels; show the selected face (or the largest); return its id."""
        for face in faces:
            self._history.setdefault(face.track_id, deque(maxlen=TIMELINE_LENGTH)).append(labels.index(face.label))
        live = {face.track_id for face in faces}
        for track_id in [t for t in self._history if t not in live and len(self._history) > 32]:
            del self._history[track_id]
        face = next((f for f in faces if f.track_id == selected), None)
        if face is None and faces:
            face = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
        if face is None:
            self.title.setText("No face")
            self.bars.set_values(labels, {})
            self.timeline.set_entries([])
            return None
        self.title.setText(f"Face {face.track_id}: {face.label} ({face.score:.0%})")
        self.bars.set_values(labels, face.probs)
        self.timeline.set_entries(list(self._history.get(face.track_id, [])))
        return face.track_id

    def reset(self) -> None:
        self._history.clear()
