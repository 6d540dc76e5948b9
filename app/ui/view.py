"""The video view: paints the latest annotated frame, scaled to fit; a click picks a face."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget


class VideoView(QWidget):
    face_clicked = Signal(int)  # track id

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 240)
        self._image: QImage | None = None
        self._faces = ()
        self._selected: int | None = None
        self._message = "Loading…"

    def show_frame(self, image: QImage, faces, selected: int | None) -> None:
        self._image, self._faces, self._selected = image, faces, selected
        self.update()

    def show_message(self, text: str) -> None:
        self._message = text
        self.update()

    def clear(self, text: str) -> None:
        self._image, self._faces = None, ()
        self.show_message(text)

    @property
    def message(self) -> str:
        return self._message

    def _target(self) -> QRectF:
        """Where the image lies in the widget (aspect ratio kept, centred)."""
        if self._image is None or self._image.isNull():
            return QRectF()
        scale = min(self.width() / self._image.width(), self.height() / self._image.height())
        w, h = self._image.width() * scale, self._image.height() * scale
        return QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(24, 24, 28))
        target = self._target()
        if target.isValid():
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(target, self._image)
            selected = next((f for f in self._faces if f.track_id == self._selected), None)
            if selected is not None and len(self._faces) > 1:
                scale = target.width() / self._image.width()
                x1, y1, x2, y2 = selected.box
                painter.setPen(QPen(QColor(255, 255, 255), 2, Qt.PenStyle.DashLine))
                painter.drawRect(QRectF(target.x() + x1 * scale, target.y() + y1 * scale,
                                        (x2 - x1) * scale, (y2 - y1) * scale))
        if self._message and not target.isValid():
            painter.setPen(QColor(220, 220, 220))
            font = painter.font()
            font.setPointSizeF(font.pointSizeF() * 1.3)
            painter.setFont(font)
            painter.drawText(self.rect().adjusted(20, 20, -20, -20),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._message)
        painter.end()

    def mousePressEvent(self, event) -> None:  # noqa: N802
        target = self._target()
        if not target.isValid():
            return
        scale = target.width() / self._image.width()
        point: QPointF = (event.position() - target.topLeft()) / scale
        for face in self._faces:
            x1, y1, x2, y2 = face.box
            if x1 <= point.x() <= x2 and y1 <= point.y() <= y2:
                self.face_clicked.emit(face.track_id)
                return
