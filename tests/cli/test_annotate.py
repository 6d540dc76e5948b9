import json

import cv2
import numpy as np
import pytest
from PIL import Image

from fer_emotion.app.cli import annotate
from tests.conftest import ASTRONAUT_FACE, LABELS


@pytest.fixture()
def photos(tmp_path, astronaut, grace_hopper):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(astronaut).save(folder / "astronaut.png")
    Image.fromarray(grace_hopper).save(folder / "hopper.jpg")
    return folder


def run(args, tiny_model):
    return annotate.main([*map(str, args), "--model", str(tiny_model)])


@pytest.mark.parametrize("mode", ["emoji", "label"])
def test_images_get_annotated_copies_and_json(photos, tmp_path, tiny_model, capsys, mode):
    out = tmp_path / "out"
    assert run([photos, "--out", out, "--json", "--mode", mode], tiny_model) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["astronaut.json", "astronaut_annotated.png", "hopper.json", "hopper_annotated.jpg"]
    document = json.loads((out / "astronaut.json").read_text())
    (face,) = document["faces"]
    np.testing.assert_allclose(face["box"], ASTRONAUT_FACE, atol=4.0)
    assert face["label"] in LABELS and set(face["probs"]) == set(LABELS)
    assert face["score"] == pytest.approx(face["probs"][face["label"]], abs=1e-3)
    annotated = cv2.imread(str(out / "astronaut_annotated.png"))[:, :, ::-1]
    original = np.asarray(Image.open(photos / "astronaut.png"))
    assert np.any(annotated != original)
    assert "astronaut_annotated.png" in capsys.readouterr().out


def test_inputs_are_never_overwritten_and_names_never_clash(tmp_path, astronaut, tiny_model):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        Image.fromarray(astronaut).save(tmp_path / folder / "face.png")
    (tmp_path / "a" / "face_annotated.png").write_bytes(b"keep me")
    before = (tmp_path / "a" / "face.png").read_bytes()
    assert run([tmp_path / "a" / "face.png", tmp_path / "b" / "face.png", "--out", tmp_path / "a"], tiny_model) == 0
    assert (tmp_path / "a" / "face.png").read_bytes() == before
    assert (tmp_path / "a" / "face_annotated.png").read_bytes() == b"keep me"
    assert {p.name for p in (tmp_path / "a").iterdir()} == {
        "face.png", "face_annotated.png", "face-2_annotated.png", "face-3_annotated.png"}


def test_bad_inputs_are_reported_and_the_rest_still_done(photos, tmp_path, tiny_model, capsys):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (photos / "empty.png").write_bytes(b"")
    out = tmp_path / "out"
    assert run([photos, tmp_path / "missing.jpg", "--out", out], tiny_model) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 3 and all(line.startswith("fer-annotate: ") for line in errors)
    assert {"astronaut_annotated.png", "hopper_annotated.jpg"} <= {p.name for p in out.iterdir()}


def test_picture_without_face(tmp_path, tiny_model):
    Image.new("RGB", (320, 240), (30, 120, 200)).save(tmp_path / "sky.png")
    out = tmp_path / "out"
    assert run([tmp_path / "sky.png", "--out", out, "--json"], tiny_model) == 0
    assert json.loads((out / "sky.json").read_text())["faces"] == []
    assert (out / "sky_annotated.png").exists()
    assert run([tmp_path / "sky.png", "--out", out, "--json", "--whole-image"], tiny_model) == 0
    (face,) = json.loads((out / "sky-2.json").read_text())["faces"]
    assert face["whole_image"] is True


def test_video_is_annotated_frame_by_frame_with_track_ids(tmp_path, astronaut, tiny_model):
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (512, 512))
    for step in range(6):
        writer.write(np.roll(astronaut, 2 * step, axis=1)[:, :, ::-1].copy())
    writer.release()
    out = tmp_path / "out"
    assert run([path, "--out", out, "--json", "--detect-every", "3"], tiny_model) == 0
    document = json.loads((out / "clip.json").read_text())
    assert [f["index"] for f in document["frames"]] == list(range(6))
    assert document["frames"][2]["time"] == pytest.approx(0.2)
    assert {face["track_id"] for frame in document["frames"] for face in frame["faces"]} == {1}
    capture = cv2.VideoCapture(str(out / "clip_annotated.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 6


def test_model_without_metadata_stops_with_one_line(photos, tmp_path, capsys):
    from tests.conftest import write_linear_onnx

    bare = write_linear_onnx(tmp_path / "bare.onnx", None)
    assert annotate.main([str(photos), "--out", str(tmp_path / "o"), "--model", str(bare)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "fer-train export" in err


def test_a_shipped_model_is_named_by_its_file_name_from_any_folder(photos, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no fer2013.onnx here: the shipped one is meant
    out = tmp_path / "out"
    assert annotate.main([str(photos / "astronaut.png"), "--out", str(out), "--json", "--model", "fer2013.onnx"]) == 0
    assert json.loads((out / "astronaut.json").read_text())["model"] == "fer2013.onnx"
    capsys.readouterr()
    assert annotate.main([str(photos / "astronaut.png"), "--out", str(out), "--model", "fer2031.onnx"]) == 2
    error = capsys.readouterr().err
    assert "fer2031.onnx: no such model file" in error and "fer2013_vgg.onnx" in error  # the names it could have meant
