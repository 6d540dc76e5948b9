"""Face detection: MTCNN behind the pipeline's contract.

Two calls: ``detect`` runs the whole MTCNN cascade on a frame; ``refine`` follows faces found on an
earlier frame for a fraction of that cost. It runs MTCNN's last stage (O-Net) on each carried box,
which moves the box onto the face again; where O-Net is unsure (a turned or half-hidden face: it
scored such faces 0.1-0.9 on frames where the whole cascade found them at 0.99+), the whole cascade
runs again on a small window around that box only. The networks run in onnxruntime by default
(``app.core.mtcnn``), so detection imports neither torch nor torchvision.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from fer_emotion.app.core.mtcnn import CELL, Nets, cut, detect_faces, eye_roll, make_nets, normalise

log = logging.getLogger(__name__)

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    box: Box  # x1, y1, x2, y2 in frame pixels, clipped to the frame
    score: float
    roll: float = 0.0  # degrees the line between the eyes turns from level (O-Net's landmarks; see eye_roll)


@dataclass(frozen=True)
class DetectorConfig:
    min_face_size: int = 20  # smallest face searched for, in frame pixels
    threshold: float = 0.9  # final face probability; MTCNN's own 0.7 lets known false positives through
    stage_thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    factor: float = 0.709
    min_box_size: float = 16.0  # narrower boxes are dropped: MTCNN's box regression can shrink a false
    # positive below min_face_size (one such 13x15 px box sits in a landscape photo at p=0.95)
    refine_threshold: float = 0.8  # O-Net probability that moves a carried box without looking again
    window: float = 2.0  # side of the window searched again around an unsure box, in box sides
    window_pixels: int = 96  # the window's side after resizing: the face is about half of it
    device: str = "auto"  # auto, cpu or cuda
    threads: int = 0  # CPU threads; 0: build_pipeline chooses (see detector_threads)
    backend: str = "onnx"  # onnx (onnxruntime) or torch (facenet-pytorch's modules)
    max_detect_pixels: int = 2048 * 1024  # larger frames (not 1080p video) are searched in a copy shrunk to this
    # many pixels, for faces of min_face_size of its pixels: MTCNN's pyramid on a 63 MP photo took 6 GB. Boxes
    # come back in the frame's pixels; the crops are cut from the frame itself


class FaceDetector:
    """MTCNN behind a typed contract: a frame in (RGB uint8, H x W x 3), a list of detections out."""

    def __init__(self, config: DetectorConfig = DetectorConfig(), nets: Nets | None = None) -> None:
        self.config = config
        self._nets = nets or make_nets(config.backend, config.device, config.threads)
        self.device = self._nets.device  # "CPU" or "CUDA"

    def _cascade(self, images: np.ndarray, min_face: float) -> list[np.ndarray]:
        return detect_faces(images, self._nets, min_face, self.config.stage_thresholds, self.config.factor)

    def detect(self, frame: np.ndarray) -> list[Detection]:
        """Every face in ``frame`` with probability >= the threshold; an empty list when none."""
        height, width = frame.shape[:2]
        if min(height, width) < 12:
            return []
        searched = shrunk(frame[:, :, :3], self.config.max_detect_pixels)
        scale = np.array([searched.shape[1] / width, searched.shape[0] / height] * 2)
        found = self._cascade(np.ascontiguousarray(searched[None]), self.config.min_face_size)[0]
        detections = [Detection(clip_box(row[:4] / scale, width, height), float(row[4]), float(row[5]))
                      for row in found if row[4] >= self.config.threshold]
        return [d for d in detections if self._big_enough(d.box)]

    def refine(self, frame: np.ndarray, boxes: list[Box]) -> list[Detection | None]:
        """Each carried box moved onto its face again, or None where no face is left there."""
        if not boxes:
            return []
        height, width = frame.shape[:2]
        squares = [square(box) for box in boxes]
        regression, probs, landmarks = self._nets.onet(normalise(np.stack([cut(frame, box, 48) for box in squares])))
        refined: list[Detection | None] = []
        unsure: list[int] = []
        for box, shift, prob, roll in zip(squares, regression, probs, eye_roll(landmarks)):
            if prob < self.config.refine_threshold:
                unsure.append(len(refined))
                refined.append(None)
                continue
            x1, y1, x2, y2 = box
            w, h = x2 - x1 + 1, y2 - y1 + 1
            moved = clip_box((x1 + shift[0] * w, y1 + shift[1] * h, x2 + shift[2] * w, y2 + shift[3] * h), width, height)
            refined.append(Detection(moved, float(prob), float(roll)) if self._big_enough(moved) else None)
        if unsure:
            for index, found in zip(unsure, self.search_windows(frame, [boxes[i] for i in unsure])):
                refined[index] = found
        return refined

    def search_windows(self, frame: np.ndarray, boxes: list[Box]) -> list[Detection | None]:
        """The whole cascade on a window around each box (all windows in one batch); per box, the face
        found there nearest to it, or None."""
        height, width = frame.shape[:2]
        size = self.config.window_pixels
        windows = []
        for box in boxes:
            x1, y1, x2, y2 = square(box)
            half = (x2 - x1) * self.config.window / 2
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            windows.append((cx - half, cy - half, cx + half, cy + half))
        found = self._cascade(np.stack([cut(frame, window, size) for window in windows]), size / 4)
        return [self._nearest_face(box, window, candidates, width, height)
                for box, window, candidates in zip(boxes, windows, found)]

    def _nearest_face(self, box: Box, window: Box, candidates, width: int, height: int) -> Detection | None:
        """Of the faces found in ``window`` (in its resized pixels), the one nearest to ``box``, in frame
        pixels: centres less than one box side apart, sizes within 2x; or None."""
        scale = (window[2] - window[0]) / self.config.window_pixels  # frame pixels per window pixel
        side = max(box[2] - box[0], box[3] - box[1])
        best, best_distance = None, 1.0
        for candidate in candidates:
            if candidate[4] < self.config.threshold:
                continue
            moved = clip_box([window[0] + candidate[0] * scale, window[1] + candidate[1] * scale,
                              window[0] + candidate[2] * scale, window[1] + candidate[3] * scale], width, height)
            moved_side = max(moved[2] - moved[0], moved[3] - moved[1])
            distance = np.hypot((moved[0] + moved[2] - box[0] - box[2]) / 2,
                                (moved[1] + moved[3] - box[1] - box[3]) / 2) / side
            if distance < best_distance and 0.5 < moved_side / side < 2.0 and self._big_enough(moved):
                best, best_distance = Detection(moved, float(candidate[4]), float(candidate[5])), distance
        return best

    def _big_enough(self, box: Box) -> bool:
        return min(box[2] - box[0], box[3] - box[1]) >= self.config.min_box_size


def shrunk(frame: np.ndarray, max_pixels: int) -> np.ndarray:
    """``frame`` itself when it has at most ``max_pixels`` pixels, else an area-averaged copy that has (at
    least 12 px a side, P-Net's cell)."""
    height, width = frame.shape[:2]
    if height * width <= max_pixels:
        return frame
    scale = (max_pixels / (height * width)) ** 0.5
    size = (max(CELL, int(width * scale)), max(CELL, int(height * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def square(box: Box) -> Box:
    """The square of the box's longer side around its centre (MTCNN's own 'rerec')."""
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2


def clip_box(box, width: int, height: int) -> Box:
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    return (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))
