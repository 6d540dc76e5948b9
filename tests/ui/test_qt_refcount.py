"""PySide6 6.12.0 dropped a reference to None on each QPainter call that returns nothing: on Python 3.11,
where None is not immortal, a live view aborted with "deallocating None" within seconds. The project
pins a PySide6 without that fault; this test fails on one that has it."""

import sys

import pytest
from PySide6.QtCore import QRectF
from PySide6.QtGui import QColor, QImage, QPainter


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12: its count never drops")
def test_painting_keeps_the_reference_count_of_none(qapp):
    image = QImage(64, 64, QImage.Format.Format_RGB32)
    painter = QPainter(image)
    losses = []
    try:
        for _attempt in range(3):  # threads left by other tests move the count too: keep the smallest loss
            before = sys.getrefcount(None)
            for _ in range(200):
                painter.fillRect(QRectF(0, 0, 8, 8), QColor(10, 20, 30))
                painter.setPen(QColor(200, 0, 0))
                painter.drawRect(QRectF(1, 1, 6, 6))
            losses.append(before - sys.getrefcount(None))
    finally:
        painter.end()
    assert min(losses) < 300, f"None lost {losses} references in three rounds of 600 paint calls"
