import cv2
import numpy as np

from fer_emotion.app.core.crop import MAX_ROLL, crop_face, crop_faces, normalize, square_box, to_gray


def test_square_box_grows_by_margin_around_centre():
    assert square_box((10, 20, 30, 60), 0.25) == (-10, 10, 50, 70)  # side 40 * 1.5 around (20, 40)


def test_crop_is_gray_square_of_model_size(astronaut):
    crops = crop_faces(astronaut, [(181, 62, 268, 172), (0, 0, 50, 50)], 48, 0.15)
    assert crops.shape == (2, 48, 48) and crops.dtype == np.uint8


def test_no_boxes_give_an_empty_batch(astronaut):
    assert crop_faces(astronaut, [], 48, 0.1).shape == (0, 48, 48)


def test_face_cut_by_frame_edge_is_padded_with_edge_pixels():
    gray = np.zeros((100, 100), np.uint8)
    gray[:, :50] = 200  # left half bright
    crop = crop_face(gray, (-30, 20, 30, 80), 48, 0.0)  # half the box lies left of the frame
    assert crop.shape == (48, 48)
    assert crop[:, :20].min() == 200  # replicated edge, not black


def test_normalize_matches_metadata_formula():
    crops = np.array([[[0, 255]]], np.uint8)
    out = normalize(crops, 0.5, 0.25)
    assert out.shape == (1, 1, 1, 2)
    np.testing.assert_allclose(out[0, 0, 0], [-2.0, 2.0])


def turned_about(image: np.ndarray, centre: tuple[float, float], degrees: float) -> np.ndarray:
    matrix = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    return cv2.warpAffine(image, matrix, image.shape[1::-1], flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def test_turned_crop_undoes_a_tilted_head(astronaut):
    gray = to_gray(astronaut)
    box = (181, 62, 268, 172)
    upright = crop_face(gray, box, 48, 0.15).astype(np.float32)
    tilted = turned_about(gray, ((181 + 268) / 2, (62 + 172) / 2), 25)  # counter-clockwise: a roll of -25
    as_is = crop_face(tilted, box, 48, 0.15).astype(np.float32)
    turned = crop_face(tilted, box, 48, 0.15, roll=-25).astype(np.float32)
    assert np.abs(turned - upright).mean() < 0.1 * np.abs(as_is - upright).mean()
    assert np.abs(turned - upright)[8:40, 8:40].mean() < 6  # grey levels, where interpolation differs


def test_rolls_beyond_the_limit_are_not_undone(astronaut):
    box = [(181, 62, 268, 172)]
    plain = crop_faces(astronaut, box, 48, 0.15)
    np.testing.assert_array_equal(crop_faces(astronaut, box, 48, 0.15, [MAX_ROLL + 1]), plain)
    assert not np.array_equal(crop_faces(astronaut, box, 48, 0.15, [MAX_ROLL - 1]), plain)
