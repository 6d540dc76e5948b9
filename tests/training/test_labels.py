import numpy as np

from fer_emotion.training.labels import ENGAGEMENT, clean_votes, engagement_labels, ferplus_majority_targets, ferplus_targets

# Columns: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
ROWS = {
    "angry": [1, 0, 0, 1, 8, 0, 0, 0, 0, 0],
    "angry_but_weak": [4, 0, 0, 2, 2, 1, 1, 0, 0, 0],  # anger is not on top and not > 2
    "neutral": [8, 0, 0, 1, 1, 0, 0, 0, 0, 0],  # neutral > 6 with some sadness/anger
    "focused": [5, 2, 1, 0, 0, 0, 0, 2, 0, 0],  # no sadness or anger, neutral on top
    "focused_and_neutral": [9, 1, 0, 0, 0, 0, 0, 0, 0, 0],  # both rules: Focused wins
    "bored": [3, 0, 0, 6, 1, 0, 0, 0, 0, 0],  # sadness > anger + 2, no happiness or fear
    "not_a_face": [8, 0, 0, 1, 1, 0, 0, 0, 0, 1],
    "unknown": [3, 0, 0, 1, 1, 0, 0, 0, 5, 0],
}


def test_engagement_rules_and_precedence():
    votes = np.array(list(ROWS.values()), np.float32)
    labels = engagement_labels(votes)
    named = {name: (ENGAGEMENT[label] if label >= 0 else None) for name, label in zip(ROWS, labels)}
    assert named["angry"] == "angry"
    assert named["angry_but_weak"] is None
    assert named["neutral"] == "neutral"
    assert named["focused"] == "focused"
    assert named["focused_and_neutral"] == "focused"
    assert named["bored"] == "bored"


def test_ferplus_cleaning_drops_not_a_face_and_unknown():
    votes = np.array(list(ROWS.values()), np.float32)
    keep = clean_votes(votes)
    assert keep.tolist() == [True] * 6 + [False, False]
    targets = ferplus_targets(votes)
    assert targets.hard.tolist() == [4, 0, 0, 0, 0, 3]  # most-voted emotion in FER+ order (anger=4, neutral=0, sadness=3)


def test_ferplus_majority_drops_single_votes_and_faces_without_a_majority():
    votes = np.array(list(ROWS.values()), np.float32)
    targets = ferplus_majority_targets(votes)
    # angry_but_weak: 4 of the 8 votes left for neutral is not more than half; unknown: 5 of 8 for unknown;
    # not_a_face counts here: its one NF vote is dropped as an outlier, as is focused's single surprise vote
    assert targets.keep.tolist() == [True, False, True, True, True, True, True, False]
    assert targets.hard.tolist() == [4, 0, 0, 0, 3, 0]
    tie = np.array([[4, 0, 0, 4, 0, 0, 0, 0, 2, 0], [6, 1, 1, 1, 1, 0, 0, 0, 0, 0]], np.float32)
    assert ferplus_majority_targets(tie).keep.tolist() == [False, True]  # 4 of 10 is no majority; 6 of 6 is
