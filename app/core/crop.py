"""Face crops: one piece of code for the app and for training.

A detection box becomes a square with a margin, is cut from the frame (padding with edge pixels
where the square leaves the frame), turned to grayscale and resized to the model's input size.
"""

from __future__ import annotations

import cv2
import numpy as np

Box = tuple[float, float, float, float]


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


def crop_face(gray: np.ndarray, box: Box, size: int, margin: float) -> np.ndarray:
    """The ``size`` x ``size`` uint8 crop of one face from a gray frame."""
    left, top, right, bottom = square_box(box, margin)
    height, width = gray.shape[:2]
    pad = max(0, -left, -top, right - width, bottom - height)
    if pad:
        gray = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        left, top, right, bottom = left + pad, top + pad, right + pad, bottom + pad
    return resize_square(gray[top:bottom, left:right], size)


def crop_faces(frame: np.ndarray, boxes: list[Box], size: int, margin: float) -> np.ndarray:
    """All faces of one frame as a uint8 array of shape (N, size, size)."""
    if not boxes:
        return np.empty((0, size, size), np.uint8)
    gray = to_gray(frame)
    return np.stack([crop_face(gray, box, size, margin) for box in boxes])


def normalize(crops: np.ndarray, mean: float, std: float) -> np.ndarray:
    """uint8 crops (N, H, W) as the float32 NCHW tensor a model takes."""
    scaled = crops.astype(np.float32) * np.float32(1.0 / 255.0)
    return ((scaled - np.float32(mean)) / np.float32(std))[:, None, :, :]
