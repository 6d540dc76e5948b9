"""Frame sources: still images, video files and cameras, all yielding RGB uint8 frames."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})
MAX_PIXELS = 80_000_000  # larger declared sizes are refused before decoding (decompression bombs)


class SourceError(ValueError):
    """An input that cannot be read; the message is one line that names it."""


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # RGB uint8, H x W x 3
    index: int
    timestamp: float  # seconds from the start of the stream
    decode_ms: float = 0.0


def kind_of(path: Path) -> str | None:
    """'image', 'video' or None, by file name."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    return None


def read_image(path: Path) -> np.ndarray:
    """An image file as RGB uint8, upright per its EXIF orientation.

    16-bit images are scaled to 8 bits, palette/CMYK/gray images become RGB, transparency is laid on
    white, and an animated GIF gives its first frame.
    """
    started = time.perf_counter()
    try:
        if path.stat().st_size == 0:
            raise SourceError(f"{path}: empty file")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise SourceError(f"{path}: declared size {width}x{height} is too large to decode safely")
                image.seek(0)
                image.load()
                ImageOps.exif_transpose(image, in_place=True)  # a copy would double a big photo's peak memory
                rgb = to_rgb(image)
    except SourceError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise SourceError(f"{path}: declared size is too large to decode safely") from None
    except UnidentifiedImageError:
        raise SourceError(f"{path}: not an image this program can read") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise SourceError(f"{path}: broken or truncated image ({err})") from None
    log.debug("decoded %s in %.1f ms", path, (time.perf_counter() - started) * 1000)
    return rgb


def to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if array.max() > 255 else 255.0
        gray = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        span = max(float(array.max() - array.min()), 1e-9)
        gray = ((array - array.min()) / span * 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


class VideoSource:
    """Frames of a video file (or a camera index) through OpenCV, as RGB."""

    def __init__(self, target: Path | int, loop: bool = False) -> None:
        self.target = target
        self.loop = loop
        self._capture = cv2.VideoCapture(target if isinstance(target, int) else str(target))
        if not self._capture.isOpened():
            raise SourceError(f"{target}: cannot open as video")
        if isinstance(target, int):  # a camera: keep its queue short so the newest frame comes next
            self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self.fps = self._capture.get(cv2.CAP_PROP_FPS) or 30.0
        self.frame_count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)) if isinstance(target, Path) else 0
        self.size = (int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while True:
            started = time.perf_counter()
            ok, bgr = self._capture.read()
            if not ok:
                if self.loop and index > 0 and not isinstance(self.target, int):
                    self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    continue
                if index == 0:
                    raise SourceError(f"{self.target}: no frame could be decoded")
                return
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            decode_ms = (time.perf_counter() - started) * 1000
            yield Frame(rgb, index, index / self.fps, decode_ms)
            index += 1

    def close(self) -> None:
        self._capture.release()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
