"""Drawing the overlay: an emoji over each face, or a box with the class and its confidence."""

from __future__ import annotations

import functools
import logging
from importlib import resources

import cv2
import numpy as np

log = logging.getLogger(__name__)

EMOJI = "emoji"
LABEL = "label"
MODES = (EMOJI, LABEL)
PALETTE = [(66, 133, 244), (219, 68, 55), (244, 180, 0), (15, 157, 88), (171, 71, 188), (0, 172, 193), (255, 112, 67)]


@functools.lru_cache(maxsize=64)
def emoji_image(name: str) -> np.ndarray | None:
    """The RGBA art for an emoji named by codepoint (``1f604``) or by the character itself."""
    if name and not name.isascii():
        name = "-".join(f"{ord(ch):x}" for ch in name if ord(ch) != 0xFE0F)
    resource = resources.files("fer_emotion.assets") / "emoji" / f"{name.lower()}.png"
    if not resource.is_file():
        log.warning("no emoji art for %r; drawing labels for that class", name)
        return None
    data = np.frombuffer(resource.read_bytes(), np.uint8)
    bgra = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA)


def colour_for(label_index: int) -> tuple[int, int, int]:
    return PALETTE[label_index % len(PALETTE)]


def draw_faces(frame: np.ndarray, faces, labels: tuple[str, ...], emoji: dict[str, str], mode: str) -> np.ndarray:
    """A new RGB frame with every face annotated; ``faces`` have ``box``, ``label``, ``probs``."""
    canvas = np.ascontiguousarray(frame[:, :, :3]).copy()
    for face in faces:
        name = labels[face.label]
        art = emoji_image(emoji.get(name, "")) if mode == EMOJI else None
        if art is not None:
            paste_emoji(canvas, art, face.box)
        else:
            draw_label(canvas, face.box, f"{name} {face.probs[face.label]:.0%}", colour_for(face.label))
    return canvas


def draw_no_face(frame: np.ndarray) -> np.ndarray:
    """A copy of the frame that says no face was found."""
    canvas = np.ascontiguousarray(frame[:, :, :3]).copy()
    scale = max(0.5, canvas.shape[1] / 900)
    draw_text(canvas, "no face found", (int(10 * scale), int(34 * scale)), scale, (255, 255, 255), (200, 40, 40))
    return canvas


def paste_emoji(canvas: np.ndarray, art: np.ndarray, box) -> None:
    """Alpha-blend ``art`` over a square that covers the face box, clipped to the frame."""
    x1, y1, x2, y2 = box
    side = int(round(max(x2 - x1, y2 - y1) * 1.15))
    if side < 2:
        return
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = int(round(cx - side / 2)), int(round(cy - side / 2))
    interpolation = cv2.INTER_CUBIC if side > art.shape[0] else cv2.INTER_AREA
    scaled = cv2.resize(art, (side, side), interpolation=interpolation)
    height, width = canvas.shape[:2]
    sx1, sy1, sx2, sy2 = max(left, 0), max(top, 0), min(left + side, width), min(top + side, height)
    if sx2 <= sx1 or sy2 <= sy1:
        return
    patch = scaled[sy1 - top:sy2 - top, sx1 - left:sx2 - left]
    alpha = patch[:, :, 3:4].astype(np.float32) * (1.0 / 255.0)
    region = canvas[sy1:sy2, sx1:sx2].astype(np.float32)
    canvas[sy1:sy2, sx1:sx2] = (patch[:, :, :3] * alpha + region * (1.0 - alpha)).astype(np.uint8)


def draw_label(canvas: np.ndarray, box, text: str, colour: tuple[int, int, int]) -> None:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    thickness = max(2, (x2 - x1) // 60)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
    scale = float(np.clip((x2 - x1) / 160, 0.45, 1.6))
    baseline_y = y1 - 6 if y1 > 30 * scale else y2 + int(24 * scale)
    draw_text(canvas, text, (x1, baseline_y), scale, (255, 255, 255), colour)


def draw_text(canvas: np.ndarray, text: str, origin: tuple[int, int], scale: float, fg, bg) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    thickness = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(text, font, scale, thickness)
    x, y = origin
    cv2.rectangle(canvas, (x, y - th - base), (x + tw + 4, y + base // 2), bg, cv2.FILLED)
    cv2.putText(canvas, text, (x + 2, y - base // 2), font, scale, fg, thickness, cv2.LINE_AA)
