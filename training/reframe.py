"""Dataset faces framed as the app frames a face: found by its MTCNN, cut by its crop.

A dataset's 48x48 faces were cut by another detector than the app's. MTCNN's box on them is about as
large as the whole image but varies from face to face (side 0.85-1.33 of the image between the 10th and
90th percentile, centre off by about 3 px), and the app's crop resamples the face on the way. To show a
model faces framed the app's way, each face is enlarged 3x, set in a frame of its own mirror image, found
there by the app's detector (the detection nearest the centre) and cut as the pipeline cuts it. Faces
the detector misses stay as they are. Results are cached, since detection takes minutes for a dataset.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fer_emotion.app.core.crop import crop_faces
from fer_emotion.app.core.detector import Detection, DetectorConfig, FaceDetector

log = logging.getLogger(__name__)

ENLARGE = 3  # the face's side in the frame, in face sides
FRAME = 6  # the frame's side, in face sides
CACHE = Path.home() / ".cache" / "fer-emotion" / "reframe"
VERSION = "1"  # part of the cache key: change it when the framing or the crop changes


def framed(face: np.ndarray, degrees: float = 0.0) -> np.ndarray:
    """A gray face enlarged, framed by its mirror image and turned about the centre, as an RGB frame."""
    side = face.shape[0]
    big = cv2.resize(face, (ENLARGE * side, ENLARGE * side), interpolation=cv2.INTER_CUBIC)
    border = (FRAME - ENLARGE) * side // 2
    frame = cv2.copyMakeBorder(big, border, border, border, border, cv2.BORDER_REFLECT)
    if degrees:
        centre = (FRAME * side - 1) / 2
        matrix = cv2.getRotationMatrix2D((centre, centre), degrees, 1.0)
        frame = cv2.warpAffine(frame, matrix, frame.shape[::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return np.repeat(frame[:, :, None], 3, axis=2)


def central(detections: list[Detection], face_side: int) -> Detection | None:
    """The detection nearest the centre of a ``framed`` frame, if one lies within a third of the face's side."""
    middle = FRAME * face_side / 2

    def distance(d: Detection) -> float:
        return float(np.hypot((d.box[0] + d.box[2]) / 2 - middle, (d.box[1] + d.box[3]) / 2 - middle))

    near = [d for d in detections if distance(d) < ENLARGE * face_side / 3]
    return min(near, key=distance) if near else None


def reframe_faces(faces: np.ndarray, margin: float = 0.0, level: bool = False, threads: int = 1,
                  progress: bool = True, cached: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Each face (uint8 N x S x S) as the app's detector and crop would cut it (``level``: turned upright
    by the detector's eye roll, as for a model trained on level eyes), and which faces the detector found
    (the others are returned as they were)."""
    key = hashlib.sha1(faces.tobytes() + f"{faces.shape}|{margin}|{level}|{VERSION}".encode()).hexdigest()
    stored = CACHE / f"{key}.npz" if cached else None
    if stored is not None and stored.exists():
        try:
            with np.load(stored) as saved:
                return saved["faces"], saved["found"]
        except (OSError, ValueError, KeyError):  # an unreadable entry is computed again and replaced
            log.warning("%s is unreadable; framing the faces again", stored)
    detector = FaceDetector(DetectorConfig(device="cpu", threads=threads))
    side = faces.shape[1]
    reframed, found = faces.copy(), np.zeros(len(faces), bool)
    bar = tqdm(faces, desc="framing faces as the app does", disable=not progress, mininterval=2.0)
    for index, face in enumerate(bar):  # ~15 ms a face on one thread; batching frames is no faster
        frame = framed(face)
        detection = central(detector.detect(frame), side)
        if detection is not None:
            rolls = [detection.roll] if level else None
            reframed[index] = crop_faces(frame, [detection.box], side, margin, rolls)[0]
            found[index] = True
    log.info("framed %d of %d faces as the app does (the detector missed the rest)", int(found.sum()), len(faces))
    if stored is not None:
        stored.parent.mkdir(parents=True, exist_ok=True)
        partial = stored.with_name(f"{stored.stem}.{os.getpid()}.partial.npz")  # ranks under torchrun race
        np.savez(partial, faces=reframed, found=found)
        partial.replace(stored)
    return reframed, found
