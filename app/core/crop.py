"""Face crops: one piece of code for the app and for training.

A detection box becomes a square with a margin, is cut from the frame (padding with edge pixels
where the square leaves the frame), turned to grayscale and resized to the model's input size. For a
model trained on faces with level eyes (metadata ``align`` = ``eyes``) the square is also turned about
its centre by the face's roll, so a tilted head reaches the model upright.
"""

from __future__ import annotations

import cv2
import numpy as np

Box = tuple[float, float, float, float]
MAX_ROLL = 45.0  # degrees; a larger roll is more often a landmark gone wrong than a head on its side


def square_box(box: Box, margin: float) -> tuple[int, int, int, int]:
    """The square around ``box`` grown by ``margin`` of its side on every side, in whole pixels."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    left, top = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    side_px = max(1, int(round(side)))
    return left, top, left + side_px, top + side_px


def to_gray(image: np.ndarray) -> np.ndarray:
    """An RGB, RGBA or gray uint8 array as a 2-D gray uint8 array."""
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_RGBA2GRAY)
    if image.shape[2] == 1:
        return image[:, :, 0]
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def resize_square(gray: np.ndarray, size: int) -> np.ndarray:
    """A gray image resized to ``size`` x ``size`` (area averaging when shrinking)."""
    if gray.shape[0] == size and gray.shape[1] == size:
        return gray
    shrinking = gray.shape[0] > size or gray.shape[1] > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(gray, (size, size), interpolation=interpolation)


def usable_roll(roll: float) -> float:
    """The turn a crop gets for a measured roll: none beyond ``MAX_ROLL``."""
    return float(roll) if abs(roll) <= MAX_ROLL else 0.0


def turn(image: np.ndarray, degrees: float, size: int | None = None, scale: float = 1.0) -> np.ndarray:
    """A square image turned about its centre by ``degrees`` (counter-clockwise as shown, undoing a
    roll of that many degrees) and scaled by ``scale``; the ``size`` x ``size`` square around the same
    centre (default: the image's size), corners filled with edge pixels."""
    side = image.shape[0]
    size = size or side
    centre = (side - 1) / 2.0
    matrix = cv2.getRotationMatrix2D((centre, centre), degrees, scale)
    matrix[:, 2] += (size - side) / 2.0  # the image's centre onto the result's
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_face(gray: np.ndarray, box: Box, size: int, margin: float, roll: float = 0.0) -> np.ndarray:
    """The ``size`` x ``size`` uint8 crop of one face from a gray frame, turned by ``roll`` degrees.

    A turned crop is cut wider, so that its corners hold frame pixels, shrunk by area averaging to the
    crop's scale and turned there: one interpolation at the model's resolution."""
    left, top, right, bottom = square_box(box, margin)
    side = right - left
    grow = 0
    if roll:
        angle = np.radians(roll)
        grow = int(np.ceil(side * (abs(np.cos(angle)) + abs(np.sin(angle)) - 1) / 2))
        left, top, right, bottom = left - grow, top - grow, right + grow, bottom + grow
    height, width = gray.shape[:2]
    pad = max(0, -left, -top, right - width, bottom - height)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        left, top, right, bottom = left + pad, top + pad, right + pad, bottom + pad
    patch = gray[top:bottom, left:right]
    if not roll:
        return resize_square(patch, size)
    wide = int(np.ceil(patch.shape[0] * size / side))
    return turn(resize_square(patch, wide), roll, size, size * patch.shape[0] / (side * wide))


def crop_faces(frame: np.ndarray, boxes: list[Box], size: int, margin: float,
               rolls: list[float] | None = None) -> np.ndarray:
    """All faces of one frame as a uint8 array of shape (N, size, size); with ``rolls``, each turned
    upright (see ``usable_roll``)."""
    if not boxes:
        return np.empty((0, size, size), np.uint8)
    gray = to_gray(frame)
    rolls = rolls or [0.0] * len(boxes)
    return np.stack([crop_face(gray, box, size, margin, usable_roll(roll)) for box, roll in zip(boxes, rolls)])


def normalize(crops: np.ndarray, mean: float, std: float) -> np.ndarray:
    """uint8 crops (N, H, W) as the float32 NCHW tensor a model takes."""
    scaled = crops.astype(np.float32) * np.float32(1.0 / 255.0)
    return ((scaled - np.float32(mean)) / np.float32(std))[:, None, :, :]
