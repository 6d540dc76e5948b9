import numpy as np

from app.core.crop import crop_face, crop_faces, normalize, square_box


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
