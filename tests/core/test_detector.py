import cv2
import numpy as np
import pytest

from fer_emotion.app.core.tracker import iou
from tests.conftest import ASTRONAUT_FACE


def test_astronaut_face_is_found_where_it_is(detector, astronaut):
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].box, ASTRONAUT_FACE, atol=4.0)
    assert faces[0].score > 0.99


def test_grace_hopper_face_is_found(detector, grace_hopper):
    faces = detector.detect(grace_hopper)
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].box
    assert 100 < x2 - x1 < 400 and 100 < y2 - y1 < 400


def test_blank_and_tiny_frames_give_empty_lists(detector):
    assert detector.detect(np.full((240, 320, 3), 128, np.uint8)) == []
    assert detector.detect(np.zeros((8, 8, 3), np.uint8)) == []


def test_boxes_are_clipped_to_the_frame(detector, astronaut):
    cut = astronaut[100:, 200:]  # the face now touches the top-left corner
    for face in detector.detect(cut):
        x1, y1, x2, y2 = face.box
        assert 0 <= x1 < x2 <= cut.shape[1] and 0 <= y1 < y2 <= cut.shape[0]


def test_refine_moves_a_stale_box_back_onto_the_face(detector, astronaut):
    x1, y1, x2, y2 = ASTRONAUT_FACE
    stale = (x1 + 12, y1 - 10, x2 + 12, y2 - 10)
    (refined,) = detector.refine(astronaut, [stale])
    assert refined is not None
    assert iou(refined.box, ASTRONAUT_FACE) > iou(stale, ASTRONAUT_FACE)
    assert iou(refined.box, ASTRONAUT_FACE) > 0.75


def test_refine_drops_a_box_with_no_face(detector, astronaut):
    (refined,) = detector.refine(astronaut, [(400, 400, 500, 500)])  # the suit, no face
    assert refined is None
    assert detector.refine(astronaut, []) == []


def test_refine_finds_a_face_that_moved_half_a_box_away(detector, astronaut):
    # O-Net alone cannot follow this far; the search window around the stale box still holds the face
    x1, y1, x2, y2 = ASTRONAUT_FACE
    stale = (x1 + 50, y1 + 20, x2 + 50, y2 + 20)
    assert iou(stale, ASTRONAUT_FACE) < 0.3
    (refined,) = detector.refine(astronaut, [stale])
    assert refined is not None
    assert iou(refined.box, ASTRONAUT_FACE) > 0.6


def test_search_windows_answers_each_box_in_order(detector, astronaut):
    found = detector.search_windows(astronaut, [(400, 400, 500, 500), ASTRONAUT_FACE])
    assert found[0] is None
    assert found[1] is not None and iou(found[1].box, ASTRONAUT_FACE) > 0.6


def tilted(image: np.ndarray, degrees: float) -> np.ndarray:
    """The image turned counter-clockwise about the astronaut's face, which then rolls by -degrees."""
    x1, y1, x2, y2 = ASTRONAUT_FACE
    matrix = cv2.getRotationMatrix2D(((x1 + x2) / 2, (y1 + y2) / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, image.shape[1::-1], borderMode=cv2.BORDER_REFLECT)


def test_every_way_of_finding_a_face_measures_its_roll(detector, astronaut):
    (level,) = detector.detect(astronaut)
    assert abs(level.roll) < 8
    for degrees in (-25, 25):
        frame = tilted(astronaut, degrees)
        (found,) = detector.detect(frame)
        (refined,) = detector.refine(frame, [ASTRONAUT_FACE])
        (searched,) = detector.search_windows(frame, [ASTRONAUT_FACE])
        for face in (found, refined, searched):
            assert face.roll - level.roll == pytest.approx(-degrees, abs=6)


def test_a_big_photo_is_searched_in_a_shrunk_copy_and_answered_in_its_own_pixels(detector, astronaut):
    from fer_emotion.app.core.detector import FaceDetector

    big = cv2.resize(astronaut, (4096, 4096), interpolation=cv2.INTER_CUBIC)  # 16.8 MP, 8x the astronaut
    limit = detector.config.max_detect_pixels
    seen = []

    class Recording:  # the detector's own networks, with the size of every P-Net input written down
        device = "CPU"

        def pnet(self, batch):
            seen.append(batch.shape[2] * batch.shape[3])
            return detector._nets.pnet(batch)

        def rnet(self, batch):
            return detector._nets.rnet(batch)

        def onet(self, batch):
            return detector._nets.onet(batch)

    (face,) = FaceDetector(detector.config, nets=Recording()).detect(big)
    assert seen and max(seen) <= limit
    np.testing.assert_allclose(face.box, np.array(ASTRONAUT_FACE) * 8, atol=40)  # 5 px of the original
    assert face.score > 0.99
