import numpy as np
import pytest

from fer_emotion.app.core.drawing import draw_faces, draw_no_face, emoji_image
from fer_emotion.app.core.tracker import TrackedFace
from tests.conftest import LABELS, tiny_model_info

BOX = (100.0, 80.0, 200.0, 200.0)


def face(label=3):
    probs = np.full(7, 0.05, np.float32)
    probs[label] = 0.7
    return TrackedFace(1, BOX, probs, label, 0.99)


@pytest.mark.parametrize("code", sorted(set(tiny_model_info().emoji.values())))
def test_every_emoji_asset_loads_as_rgba(code):
    art = emoji_image(code)
    assert art is not None and art.shape[2] == 4 and art[:, :, 3].max() == 255


def test_emoji_character_names_the_same_art():
    np.testing.assert_array_equal(emoji_image("\U0001F604"), emoji_image("1f604"))


def test_emoji_mode_covers_the_face_and_leaves_the_rest(astronaut):
    out = draw_faces(astronaut, [face()], LABELS, tiny_model_info().emoji, "emoji")
    assert out is not astronaut and out.shape == astronaut.shape
    inside = np.any(out[95:185, 115:185] != astronaut[95:185, 115:185], axis=2).mean()
    assert inside > 0.9
    np.testing.assert_array_equal(out[300:, 300:], astronaut[300:, 300:])


def test_label_mode_draws_a_box_in_the_class_colour(astronaut):
    out = draw_faces(astronaut, [face()], LABELS, tiny_model_info().emoji, "label")
    edge = out[140, 99:103]  # the left edge of the box
    assert np.any(edge != astronaut[140, 99:103])
    np.testing.assert_array_equal(out[150, 150], astronaut[150, 150])  # face itself stays visible


def test_class_without_art_falls_back_to_a_label(astronaut):
    out = draw_faces(astronaut, [face()], LABELS, {}, "emoji")
    np.testing.assert_array_equal(out[150, 150], astronaut[150, 150])
    assert np.any(out[140, 99:103] != astronaut[140, 99:103])


def test_no_face_copy_says_so(astronaut):
    out = draw_no_face(astronaut)
    assert np.any(out[:40, :200] != astronaut[:40, :200])
    np.testing.assert_array_equal(out[200:], astronaut[200:])
