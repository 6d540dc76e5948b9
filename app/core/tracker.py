"""Stable face ids across frames, smoothed probabilities and a label that does not flicker."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class TrackerConfig:
    match_iou: float = 0.3  # a detection continues a track when their boxes overlap at least this much
    max_missed: int = 5  # frames a track survives without a detection before its id is retired
    search_missed: int = 3  # frames a lost face is still looked for where it would have moved to
    prob_alpha: float = 0.35  # weight of the newest frame in the probabilities' moving average
    box_alpha: float = 0.7  # weight of the newest box; boxes follow faster than labels
    hysteresis: float = 0.08  # a new label must lead the shown one by this much probability


@dataclass
class Track:
    track_id: int
    box: Box
    probs: np.ndarray
    label: int
    score: float
    raw_box: Box = (0.0, 0.0, 0.0, 0.0)  # the newest detection, unsmoothed
    velocity: tuple[float, float] = (0.0, 0.0)  # raw box centre's move per frame
    missed: int = 0
    age: int = 1
    history: list[int] = field(default_factory=list)


@dataclass(frozen=True)
class TrackedFace:
    track_id: int
    box: Box
    probs: np.ndarray  # smoothed, sums to 1
    label: int  # index into the model's labels, with hysteresis
    score: float  # detector probability


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """Greedy IoU matching of each frame's detections to the live tracks."""

    def __init__(self, config: TrackerConfig = TrackerConfig()) -> None:
        self.config = config
        self.tracks: list[Track] = []
        self._next_id = 1

    def reset(self) -> None:
        self.tracks.clear()
        self._next_id = 1

    def predicted_boxes(self) -> list[Box]:
        """Where the faces seen lately should be now: their last raw boxes moved on by their velocity. A
        face lost a few frames ago is still included (a face turned away or hidden for a moment comes back
        without waiting for the next full detection)."""
        boxes = []
        for t in self.tracks:
            if t.missed <= self.config.search_missed:
                dx, dy = (v * (t.missed + 1) for v in t.velocity)
                boxes.append((t.raw_box[0] + dx, t.raw_box[1] + dy, t.raw_box[2] + dx, t.raw_box[3] + dy))
        return boxes

    def seen_last_frame(self) -> bool:
        return any(t.missed == 0 for t in self.tracks)

    def update(self, boxes: list[Box], scores: list[float], probs: np.ndarray) -> list[TrackedFace]:
        """Fold one frame's faces into the tracks; return the faces of this frame, in input order."""
        pairs = sorted(
            ((iou(track.box, box), t, d) for t, track in enumerate(self.tracks) for d, box in enumerate(boxes)),
            reverse=True,
        )
        track_of: dict[int, Track] = {}
        used: set[int] = set()
        for overlap, t, d in pairs:
            if overlap < self.config.match_iou:
                break
            if t in used or d in track_of:
                continue
            used.add(t)
            track_of[d] = self.tracks[t]
        for t, track in enumerate(self.tracks):
            if t not in used:
                track.missed += 1
        self.tracks = [track for track in self.tracks if track.missed <= self.config.max_missed]
        faces = []
        for d, (box, score) in enumerate(zip(boxes, scores)):
            track = track_of.get(d) or self._start(box, probs[d], score)
            if d in track_of:
                self._continue(track, box, probs[d], score)
            faces.append(TrackedFace(track.track_id, track.box, track.probs.copy(), track.label, track.score))
        return faces

    def _start(self, box: Box, probs: np.ndarray, score: float) -> Track:
        label = int(np.argmax(probs))
        track = Track(self._next_id, tuple(box), probs.astype(np.float32).copy(), label, score, tuple(box),
                      history=[label])
        self._next_id += 1
        self.tracks.append(track)
        return track

    def _continue(self, track: Track, box: Box, probs: np.ndarray, score: float) -> None:
        cfg = self.config
        track.box = tuple(cfg.box_alpha * n + (1 - cfg.box_alpha) * o for n, o in zip(box, track.box))
        if track.missed == 0:  # a move measured over one frame; after a gap, start again from rest
            move = ((box[0] + box[2] - track.raw_box[0] - track.raw_box[2]) / 2,
                    (box[1] + box[3] - track.raw_box[1] - track.raw_box[3]) / 2)
            track.velocity = tuple(0.5 * m + 0.5 * v for m, v in zip(move, track.velocity))
        else:
            track.velocity = (0.0, 0.0)
        track.raw_box = tuple(box)
        track.probs = (cfg.prob_alpha * probs + (1 - cfg.prob_alpha) * track.probs).astype(np.float32)
        leader = int(np.argmax(track.probs))
        if track.probs[leader] - track.probs[track.label] > cfg.hysteresis:
            track.label = leader
        track.score, track.missed = score, 0
        track.age += 1
        track.history = (track.history + [track.label])[-120:]
