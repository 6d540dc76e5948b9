import numpy as np
import pytest

from fer_emotion.app.core.tracker import FaceTracker, TrackerConfig


def one_hot(index, strength=0.9, classes=7):
    probs = np.full(classes, (1 - strength) / (classes - 1), np.float32)
    probs[index] = strength
    return probs


def test_ids_stay_with_moving_faces_and_new_faces_get_new_ids():
    tracker = FaceTracker()
    a, b = (0, 0, 50, 50), (200, 0, 250, 50)
    first = tracker.update([a, b], [1, 1], np.stack([one_hot(0), one_hot(1)]))
    moved = [(205, 3, 255, 53), (4, 2, 54, 52)]  # both moved, listed in the other order
    second = tracker.update(moved, [1, 1], np.stack([one_hot(1), one_hot(0)]))
    assert [f.track_id for f in second] == [first[1].track_id, first[0].track_id]
    third = tracker.update([(400, 400, 450, 450)], [1], np.stack([one_hot(2)]))
    assert third[0].track_id not in {f.track_id for f in first}


def test_track_retires_after_max_missed_frames():
    tracker = FaceTracker(TrackerConfig(max_missed=2))
    first = tracker.update([(0, 0, 50, 50)], [1], np.stack([one_hot(0)]))
    for _ in range(3):
        tracker.update([], [], np.empty((0, 7), np.float32))
    again = tracker.update([(0, 0, 50, 50)], [1], np.stack([one_hot(0)]))
    assert again[0].track_id != first[0].track_id


def test_probabilities_are_smoothed():
    tracker = FaceTracker(TrackerConfig(prob_alpha=0.5))
    tracker.update([(0, 0, 50, 50)], [1], np.stack([one_hot(0, 1.0)]))
    (face,) = tracker.update([(0, 0, 50, 50)], [1], np.stack([one_hot(3, 1.0)]))
    np.testing.assert_allclose(face.probs[[0, 3]], [0.5, 0.5], atol=1e-6)


def test_label_does_not_flicker_between_close_classes():
    tracker = FaceTracker(TrackerConfig(prob_alpha=1.0, hysteresis=0.1))
    close_a = np.array([0.46, 0, 0, 0.44, 0, 0, 0.10], np.float32)
    close_b = np.array([0.44, 0, 0, 0.46, 0, 0, 0.10], np.float32)
    labels = [tracker.update([(0, 0, 50, 50)], [1], np.stack([p]))[0].label for p in [close_a, close_b] * 5]
    assert set(labels) == {0}
    (face,) = tracker.update([(0, 0, 50, 50)], [1], np.stack([one_hot(3, 0.8)]))
    assert face.label == 3  # a clear change does switch


def test_predicted_boxes_lead_a_moving_face_by_its_velocity():
    tracker = FaceTracker()
    for step in range(4):  # 10 px to the right per frame
        tracker.update([(10.0 * step, 0, 10.0 * step + 50, 50)], [1], np.stack([one_hot(0)]))
    (predicted,) = tracker.predicted_boxes()
    assert 36 < predicted[0] < 42  # the last box was at x=30; the next frame's should be near 40
    assert predicted[2] - predicted[0] == 50
    velocity = predicted[0] - 30
    for missed in range(1, tracker.config.search_missed + 1):  # lost: still looked for, further along
        tracker.update([], [], np.empty((0, 7), np.float32))
        (predicted,) = tracker.predicted_boxes()
        assert predicted[0] == pytest.approx(30 + velocity * (missed + 1))
    tracker.update([], [], np.empty((0, 7), np.float32))
    assert tracker.predicted_boxes() == []  # lost for longer than search_missed frames: given up
