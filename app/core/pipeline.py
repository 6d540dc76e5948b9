"""The headless face -> emotion pipeline: detect, crop, classify, track, draw, with timings."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from fer_emotion.app.core.classifier import EmotionClassifier
from fer_emotion.app.core.crop import crop_faces
from fer_emotion.app.core.detector import Box, Detection, FaceDetector
from fer_emotion.app.core.drawing import EMOJI, draw_faces, draw_no_face
from fer_emotion.app.core.tracker import FaceTracker, TrackerConfig, iou

STAGES = ("decode", "detect", "crop", "classify", "track", "draw")


@dataclass(frozen=True)
class PipelineConfig:
    mode: str = EMOJI
    detect_every: int = 1  # full detection every k-th frame of a stream; O-Net refines boxes in between
    background_detection: bool = False  # full detection in a second thread: started every k-th frame at
    # most (k = detect_every), or later when the previous one has not finished
    whole_image: bool = False  # a picture without a detected face is classified as one face
    tracker: TrackerConfig = field(default_factory=TrackerConfig)


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]
    label: str
    score: float  # probability of the shown label
    probs: dict[str, float]
    track_id: int
    detector_score: float
    whole_image: bool = False

    def to_json(self) -> dict:
        return {
            "box": [round(v, 1) for v in self.box],
            "label": self.label,
            "score": round(self.score, 4),
            "probs": {k: round(v, 4) for k, v in self.probs.items()},
            "track_id": self.track_id,
            "detector_score": round(self.detector_score, 4),
            **({"whole_image": True} if self.whole_image else {}),
        }


@dataclass(frozen=True)
class FrameResult:
    """One processed frame: what crosses from the worker to whoever shows or saves it."""

    image: np.ndarray  # the annotated RGB frame
    faces: tuple[Face, ...]
    timings: dict[str, float]  # stage -> milliseconds
    index: int = 0
    timestamp: float = 0.0
    full_detection: bool = True


class Pipeline:
    """Frames in, annotated frames and faces out; one instance per stream (it keeps the tracks)."""

    def __init__(self, detector: FaceDetector, classifier: EmotionClassifier, config: PipelineConfig = PipelineConfig()):
        self.detector = detector
        self.classifier = classifier
        self.config = config
        self.tracker = FaceTracker(config.tracker)
        self._frames_since_detection = 0
        self._background = BackgroundDetection(detector, config.detect_every) if config.background_detection else None

    @property
    def labels(self) -> tuple[str, ...]:
        return self.classifier.labels

    def reset(self) -> None:
        """Forget the tracks: the next frame starts a new stream."""
        self.tracker.reset()
        self._frames_since_detection = 0
        if self._background is not None:
            self._background.reset()

    def process(self, image: np.ndarray, index: int = 0, timestamp: float = 0.0, decode_ms: float = 0.0,
                mode: str | None = None) -> FrameResult:
        timings = {stage: 0.0 for stage in STAGES}
        timings["decode"] = decode_ms
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] += (now - clock) * 1000
            clock = now

        detections, full = self._find_faces(image)
        lap("detect")
        whole = False
        if not detections and self.config.whole_image:
            height, width = image.shape[:2]
            detections, whole = [Detection((0.0, 0.0, float(width), float(height)), 0.0)], True
        info = self.classifier.info
        boxes = [d.box for d in detections]
        margin = 0.0 if whole else info.crop_margin
        rolls = [d.roll for d in detections] if info.levels_eyes else None
        crops = crop_faces(image, boxes, info.input_size, margin, rolls)
        lap("crop")
        probs = self.classifier(crops)
        lap("classify")
        tracked = self.tracker.update(boxes, [d.score for d in detections], probs)
        labels = self.labels
        faces = tuple(
            Face(t.box, labels[t.label], float(t.probs[t.label]), dict(zip(labels, map(float, t.probs))),
                 t.track_id, t.score, whole)
            for t in tracked
        )
        lap("track")
        if faces:
            annotated = draw_faces(image, tracked, labels, info.emoji, mode or self.config.mode)
        else:
            annotated = draw_no_face(image)
        lap("draw")
        return FrameResult(annotated, faces, timings, index, timestamp, full)

    def close(self) -> None:
        if self._background is not None:
            self._background.close()

    def _find_faces(self, image: np.ndarray) -> tuple[list[Detection], bool]:
        """Full detection every ``detect_every`` frames (or when no face was seen on the last frame), else
        refinement of the faces seen lately."""
        live = self.tracker.predicted_boxes()
        if self._background is not None:
            return self._background.find(image, live)
        due = self._frames_since_detection % max(1, self.config.detect_every) == 0
        self._frames_since_detection += 1
        if due or not self.tracker.seen_last_frame():
            self._frames_since_detection = 1
            return self.detector.detect(image), True
        refined = [d for d in self.detector.refine(image, live) if d is not None]
        return suppress_duplicates(refined), False


class BackgroundDetection:
    """Full MTCNN in a second thread on the latest frame it was given; O-Net follows faces in between.

    A detection starts when the previous one has finished and at least ``every`` frames have passed since
    it started (``every`` = 1: back to back, a core kept busy; larger: less CPU, new faces seen later).
    Its result describes a frame that is several frames old by then, so its faces are followed through the
    frames seen since, every ``stride``-th one, by O-Net and the window search, before they join the tracks
    on the current frame (where the ones the tracks already hold merge with them): a new face, or one the
    tracks lost, that walked half its width in the meantime is still picked up. The first frame of a stream is
    detected in the caller's thread, so a stream starts with its faces.
    """

    def __init__(self, detector: FaceDetector, every: int = 1, stride: int = 2, kept: int = 12) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.detector = detector
        self.every = max(1, every)
        self.stride, self.kept = max(1, stride), max(1, kept)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="face-detection")
        self._job = None
        self._started = False
        self._since_start = 0  # frames since the last detection started
        self._frames: list[np.ndarray] = []  # frames seen since then, every stride-th, for catching up

    def reset(self) -> None:
        if self._job is not None:
            self._job.cancel()
        self._job, self._started, self._since_start = None, False, 0
        self._frames = []

    def find(self, image: np.ndarray, live: list) -> tuple[list[Detection], bool]:
        self._since_start += 1
        if not self._started:
            self._started, self._since_start = True, 0
            return self.detector.detect(image), True
        fresh: list[Box] = []
        full = False
        if self._job is not None and self._job.done():
            fresh, full, self._job = self._catch_up(self._job.result()), True, None
        elif self._job is not None and self._since_start % self.stride == 0:
            self._frames.append(image)
            if len(self._frames) > self.kept:
                self._frames = self._frames[1::2]  # a long detection: keep every other frame
        if self._job is None and self._since_start >= self.every:
            self._job, self._since_start = self._executor.submit(self.detector.detect, image), 0
            self._frames = []
        return suppress_duplicates([d for d in self.detector.refine(image, live + fresh) if d is not None]), full

    def _catch_up(self, found: list[Detection]) -> list[Box]:
        """The faces of a finished detection, followed from its frame to the last kept frame."""
        fresh = [d.box for d in found]
        for frame in self._frames:
            if not fresh:
                break
            fresh = [d.box for d in self.detector.refine(frame, fresh) if d is not None]
        self._frames = []
        return fresh

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def suppress_duplicates(detections: list[Detection], overlap: float = 0.5) -> list[Detection]:
    """Drop boxes that refinement moved onto the same face as a better-scoring box."""
    kept: list[Detection] = []
    for detection in sorted(detections, key=lambda d: -d.score):
        if all(iou(detection.box, k.box) < overlap for k in kept):
            kept.append(detection)
    return kept
