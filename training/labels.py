"""Label schemes: how a data source's labels or FER+ votes become training targets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FER2013 = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FERPLUS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
ENGAGEMENT = ("angry", "bored", "focused", "neutral")
# Column order of the ten vote columns in the FER+ file.
VOTE_COLUMNS = FERPLUS + ("unknown", "NF")

SCHEMES = {"fer2013": FER2013, "ferplus": FERPLUS, "engagement": ENGAGEMENT}

# Spellings of one emotion used by different datasets and folder copies.
ALIASES = {
    "angry": "angry", "anger": "angry", "mad": "angry",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy",
    "sad": "sad", "sadness": "sad",
    "surprise": "surprise", "surprised": "surprise",
    "neutral": "neutral",
    "contempt": "contempt",
    "bored": "bored", "focused": "focused",
}

EMOJI = {
    "angry": "1f620", "anger": "1f620", "disgust": "1f922", "fear": "1f628", "happy": "1f604",
    "happiness": "1f604", "sad": "1f622", "sadness": "1f622", "surprise": "1f62e", "neutral": "1f610",
    "contempt": "1f612", "bored": "1f971", "focused": "1f9d0",
}


def canonical(name: str) -> str | None:
    """The common name of an emotion spelled ``name``, or None when it is not one we know."""
    return ALIASES.get(name.strip().lower())


@dataclass(frozen=True)
class Targets:
    """What a scheme made of a source: rows kept, their hard labels and optional soft targets."""

    keep: np.ndarray  # bool (N,)
    hard: np.ndarray  # int64 (kept,)
    soft: np.ndarray | None  # float32 (kept, C) or None


def from_names(names: list[str], scheme: str, label_map: dict[str, str] | None = None) -> list[int]:
    """Map a source's class names onto the scheme's class indices; raise on a name that maps nowhere."""
    classes = SCHEMES[scheme]
    index = {canonical(c): i for i, c in enumerate(classes)}
    mapped = []
    for name in names:
        target = (label_map or {}).get(name, name)
        position = index.get(canonical(target) or "")
        if position is None:
            raise ValueError(
                f"class {name!r} matches no label of scheme {scheme} ({', '.join(classes)}); "
                "rename it or pass --label-map NAME=LABEL"
            )
        mapped.append(position)
    return mapped


def clean_votes(votes: np.ndarray) -> np.ndarray:
    """FER+ cleaning: rows with a not-a-face vote, unknown >= 5, or no votes at all are dropped."""
    emotion_votes = votes[:, :8]
    return (votes[:, 9] == 0) & (votes[:, 8] < 5) & (emotion_votes.sum(1) > 0)


def ferplus_targets(votes: np.ndarray) -> Targets:
    keep = clean_votes(votes)
    emotion_votes = votes[keep, :8].astype(np.float32)
    soft = emotion_votes / emotion_votes.sum(1, keepdims=True)
    return Targets(keep, emotion_votes.argmax(1).astype(np.int64), soft)


def ferplus_majority_targets(votes: np.ndarray) -> Targets:
    """FER+ faces as the FER+ authors scored their test set (Barsoum et al., ICMI 2016; their reader's
    majority mode): each column's single votes are dropped as outliers, and a face counts only when one
    emotion holds more than half of the votes left, unknown and not-a-face included; it is labelled by
    that emotion. Fewer faces than ``ferplus_targets``, which labels every clean face by its most-voted emotion
    (PublicTest: 3,199 against 3,560; of its faces only 8, each with a lone not-a-face vote, are not among those)."""
    counted = np.where(votes > 1, votes, 0)
    top = counted.argmax(1)
    keep = (2 * counted.max(1) > counted.sum(1)) & (top < len(FERPLUS))
    return Targets(keep, top[keep].astype(np.int64), None)


VOTE_RULES = {"plurality": ferplus_targets, "majority": ferplus_majority_targets}


def engagement_labels(votes: np.ndarray) -> np.ndarray:
    """Engagement class per vote row (index into ENGAGEMENT), -1 where no rule applies.

    Precedence where rules overlap: Angry, then Bored, then Focused, then Neutral. Focused
    (neutral on top with no sadness and no anger) is the more specific reading of a calm face, so it
    wins over Neutral; Neutral keeps the rows with some sadness or anger and neutral > 6.
    """
    neutral, happiness, _surprise, sadness, anger, _disgust, fear = (votes[:, i] for i in range(7))
    emotions = votes[:, :8]

    def tops(column: int) -> np.ndarray:
        others = np.delete(emotions, column, axis=1)
        return emotions[:, column] > others.max(1)

    rules = [
        (0, tops(4) & (anger > 2)),
        (1, (happiness == 0) & (fear == 0) & (sadness != 0) & (neutral != 0) & (anger + 2 < sadness)),
        (2, (sadness == 0) & (anger == 0) & tops(0)),
        (3, tops(0) & (neutral > 6)),
    ]
    labels = np.full(len(votes), -1, np.int64)
    for label, rule in reversed(rules):
        labels[rule] = label
    return labels


def engagement_targets(votes: np.ndarray) -> Targets:
    labels = engagement_labels(votes)
    keep = clean_votes(votes) & (labels >= 0)
    return Targets(keep, labels[keep], None)


def hard_targets(labels: np.ndarray) -> Targets:
    keep = labels >= 0
    return Targets(keep, labels[keep].astype(np.int64), None)
