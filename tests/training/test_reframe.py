"""training.reframe: dataset faces cut again the way the app's detector and crop cut a face."""

import numpy as np
import pytest
import torch

from fer_emotion.app.core.crop import crop_face, to_gray, turn
from fer_emotion.app.core.mtcnn import OnnxNets, face_rolls
from tests.conftest import ASTRONAUT_FACE
from fer_emotion.training import reframe
from fer_emotion.training.augment import pick_faces


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(reframe, "CACHE", tmp_path / "cache")
    return tmp_path / "cache"


def difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b).mean())


def test_a_face_cut_wider_is_cut_again_as_the_app_cuts_it(astronaut, cache):
    gray = to_gray(astronaut)
    tight = crop_face(gray, ASTRONAUT_FACE, 48, 0.0)  # the app's own crop of this face
    loose = crop_face(gray, ASTRONAUT_FACE, 48, 0.3)  # the same face framed wider, as another detector might
    blank = np.full((48, 48), 90, np.uint8)
    faces, found = reframe.reframe_faces(np.stack([tight, loose, blank]), progress=False)
    assert found.tolist() == [True, True, False]
    assert difference(faces[1], tight) < difference(loose, tight) / 3  # zoomed back to the app's framing
    assert difference(faces[0], tight) < 12  # a face already framed that way stays close to itself
    np.testing.assert_array_equal(faces[2], blank)  # no face found: left as it is


def test_level_turns_the_cut_face_upright(astronaut, cache):
    face = crop_face(to_gray(astronaut), ASTRONAUT_FACE, 48, 0.0)
    tilted = np.stack([turn(face, 20), turn(face, -20)])
    nets = OnnxNets(device="cpu")
    as_is, _ = face_rolls(reframe.reframe_faces(tilted, progress=False)[0], nets)
    levelled, _ = face_rolls(reframe.reframe_faces(tilted, level=True, progress=False)[0], nets)
    assert np.abs(as_is).min() > 12  # still tilted (the photo's own roll is about 4 degrees)
    assert np.abs(levelled).max() < 5  # eyes level


def test_results_are_cached_and_read_back(astronaut, cache, monkeypatch):
    faces = np.stack([crop_face(to_gray(astronaut), ASTRONAUT_FACE, 48, 0.2), np.zeros((48, 48), np.uint8)])
    first = reframe.reframe_faces(faces, progress=False)
    assert len(list(cache.glob("*.npz"))) == 1

    def no_detector(*args, **kwargs):
        raise AssertionError("detection ran again instead of reading the cache")

    monkeypatch.setattr(reframe, "FaceDetector", no_detector)
    second = reframe.reframe_faces(faces, progress=False)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(AssertionError, match="detection ran again"):
        reframe.reframe_faces(faces, margin=0.1, progress=False)  # another margin is another entry
    next(cache.glob("*.npz")).write_bytes(b"not an npz")
    with pytest.raises(AssertionError, match="detection ran again"):
        reframe.reframe_faces(faces, progress=False)  # an unreadable entry is computed again


def test_pick_faces_replaces_the_chosen_share():
    images = torch.zeros((400, 4, 4), dtype=torch.uint8)
    reframed = torch.ones((400, 4, 4), dtype=torch.uint8)
    assert pick_faces(images, None, 0.5) is images
    assert pick_faces(images, reframed, 0.0) is images
    assert torch.equal(pick_faces(images, reframed, 1.0), reframed)
    mixed = pick_faces(images, reframed, 0.25, torch.Generator().manual_seed(0))
    per_face = mixed.flatten(1)
    assert torch.all(per_face.min(1).values == per_face.max(1).values)  # each face whole from one source
    assert 0.18 < float(per_face[:, 0].float().mean()) < 0.32
