"""Acceptance tests on real photos and videos from ../shared/fixtures (skipped when it is absent)."""

import json

import pytest

from fer_emotion.app.cli import annotate
from fer_emotion.app.core.sources import read_image

pytestmark = pytest.mark.shared


@pytest.mark.parametrize("name, faces", [
    ("multi_5faces_group.jpg", 5),
    ("multi_6faces_group.jpg", 6),
    ("no_face_landscape.jpg", 0),
    ("single_happy_man.jpg", 1),
    ("single_happy_woman.jpg", 1),
    ("single_angry_woman.jpg", 1),
    ("single_neutral_man.jpg", 1),
    ("single_neutral_woman.jpg", 1),
])
def test_faces_found_in_real_photos(fixtures_dir, detector, name, faces):
    assert len(detector.detect(read_image(fixtures_dir / name))) == faces


def test_webcam_video_is_annotated_frame_by_frame(fixtures_dir, tmp_path, tiny_model):
    out = tmp_path / "out"
    video = fixtures_dir / "video_single_face_webcam.mp4"
    assert annotate.main([str(video), "--out", str(out), "--json", "--model", str(tiny_model), "--detect-every", "5"]) == 0
    frames = json.loads((out / "video_single_face_webcam.json").read_text())["frames"]
    assert len(frames) == 72
    assert sum(len(f["faces"]) == 1 for f in frames) >= 70
    assert len({face["track_id"] for f in frames for face in f["faces"]}) == 1
    assert (out / "video_single_face_webcam_annotated.mp4").stat().st_size > 10_000


def test_shipped_model_reads_the_obvious_expressions(fixtures_dir, pipeline_shipped):
    for name, expected in [("single_happy_man.jpg", "happy"), ("single_happy_woman.jpg", "happy"),
                           ("single_neutral_man.jpg", "neutral")]:
        pipeline_shipped.reset()
        (face,) = pipeline_shipped.process(read_image(fixtures_dir / name)).faces
        assert face.label == expected, name
