"""``fer-train export --ensemble``: one ONNX file that averages its members, loaded like any model."""

import json

import numpy as np
import pytest

from fer_emotion.app.core.classifier import EmotionClassifier
from tests.conftest import tiny_model_info, write_linear_onnx
from tests.training.test_engine import train_args
from fer_emotion.training import cli
from fer_emotion.training.ensemble import EnsembleError, write_ensemble


@pytest.fixture
def members(tmp_path):
    return [write_linear_onnx(tmp_path / f"member{seed}.onnx", tiny_model_info(arch=f"linear{seed}").to_props(),
                              seed=seed) for seed in (1, 2, 3)]


def faces(count=12, seed=0):
    faces = np.random.default_rng(seed).integers(0, 256, (count, 48, 48), dtype=np.uint8)
    faces[:, :, :20] //= 3  # not mirror-symmetric, so a mirror image scores otherwise
    return faces


def member_average(paths, crops):
    return np.mean([EmotionClassifier(path, device="cpu")(crops) for path in paths], axis=0)


@pytest.mark.parametrize("tta", ["none", "flip"])
def test_the_ensemble_gives_its_members_average_in_the_app(members, tmp_path, tta, capsys):
    out = tmp_path / "ensemble.onnx"
    assert cli.main(["export", "--ensemble", *map(str, members), "--tta", tta, "--out", str(out)]) == 0
    assert "average of 3 models" in capsys.readouterr().out
    classifier = EmotionClassifier(out, device="cpu")
    crops = faces()
    expected = member_average(members, crops)
    if tta == "flip":
        expected = (expected + member_average(members, np.ascontiguousarray(crops[:, :, ::-1]))) / 2
    probabilities = classifier(crops)
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert not np.allclose(probabilities, EmotionClassifier(members[0], device="cpu")(crops), atol=1e-3)
    info = classifier.info
    assert info.labels == tiny_model_info().labels and info.crop_margin == tiny_model_info().crop_margin
    assert [m["file"] for m in json.loads(info.extra["members"])] == [str(p) for p in members]
    assert info.extra["ensemble_tta"] == tta and "tta" not in info.extra  # the graph flips, not the app
    assert info.arch == "ensemble of 3: linear1, linear2, linear3"


def test_members_must_share_classes_and_preprocessing(members, tmp_path, capsys):
    other = write_linear_onnx(tmp_path / "brighter.onnx", tiny_model_info(mean=0.4).to_props())
    assert cli.main(["export", "--ensemble", str(members[0]), str(other), "--out", str(tmp_path / "e.onnx")]) == 1
    message = capsys.readouterr().err.strip()
    assert "its mean 0.4 differs" in message and "\n" not in message
    with pytest.raises(EnsembleError, match="at least two"):
        write_ensemble(members[:1], tmp_path / "one.onnx", flip=False)
    assert not (tmp_path / "e.onnx").exists() and not (tmp_path / "one.onnx").exists()
    with pytest.raises(SystemExit, match="several with --ensemble"):
        cli.main(["export", str(members[0]), str(members[1]), "--out", str(tmp_path / "e.onnx")])


def test_an_ensemble_of_runs_is_scored_and_evaluated_like_a_model(synthetic, tmp_path, capsys):
    runs = [tmp_path / f"run{seed}" for seed in (1, 2)]
    for seed, run in enumerate(runs, start=1):
        assert cli.main(train_args(synthetic, run, "--epochs", "1", "--seed", str(seed))) == 0
    out = tmp_path / "ensemble.onnx"
    capsys.readouterr()
    assert cli.main(["export", "--ensemble", *map(str, runs), "--int8", "--data", str(synthetic["csv"]),
                     "--out", str(out)]) == 0
    stored = EmotionClassifier(out, device="cpu").info
    assert stored.extra["precision"] == "int8" and stored.extra["scheme"] == "fer2013"
    written = capsys.readouterr().out
    assert f"validation accuracy {stored.metrics['val_acc']:.4f}" in written
    assert cli.main(["eval", "--model", str(out), "--data", str(synthetic["csv"])]) == 0
    report = capsys.readouterr().out
    assert f"accuracy {stored.metrics['val_acc']:.4f}" in report


def test_the_written_ensemble_is_readable_by_everyone(members, tmp_path, synthetic):
    import stat

    out = tmp_path / "ensemble.onnx"
    assert cli.main(["export", "--ensemble", *map(str, members), "--data", str(synthetic["csv"]), "--out", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o644


def test_an_ensemble_put_into_another_adds_its_members_one_by_one(members, tmp_path, capsys):
    pair, triple = tmp_path / "pair.onnx", tmp_path / "triple.onnx"
    assert cli.main(["export", "--ensemble", str(members[0]), str(members[1]), "--out", str(pair)]) == 0
    assert cli.main(["export", "--ensemble", str(pair), str(members[2]), "--out", str(triple)]) == 0
    assert "triple.onnx: the average of 3 models" in capsys.readouterr().out
    crops = faces()
    # an equal share each: the pair's members a third each, not a quarter (as the pair as one member would give)
    np.testing.assert_allclose(EmotionClassifier(triple, device="cpu")(crops), member_average(members, crops),
                               atol=1e-5)
    info = EmotionClassifier(triple, device="cpu").info
    names = [f"pair.onnx: {members[0]}", f"pair.onnx: {members[1]}", str(members[2])]
    assert [m["file"] for m in json.loads(info.extra["members"])] == names
    again = tmp_path / "again.onnx"  # built again from itself: the names grow no second "triple.onnx: pair.onnx: "
    assert cli.main(["export", "--ensemble", str(triple), "--out", str(again)]) == 0
    assert [m["file"] for m in json.loads(EmotionClassifier(again, device="cpu").info.extra["members"])] == [
        *names[:2], f"triple.onnx: {members[2]}"]
    assert info.arch == "ensemble of 3: linear1, linear2, linear3"
    assert info.created > tiny_model_info().created  # the file's own date, not its first member's
    flipped = tmp_path / "flipped.onnx"
    assert cli.main(["export", "--ensemble", str(members[0]), str(members[1]), "--tta", "flip", "--out",
                     str(flipped)]) == 0
    # a flip ensemble gives up its members as they are: the new file flips only where it is asked to
    unflipped = tmp_path / "unflipped.onnx"
    assert cli.main(["export", "--ensemble", str(flipped), str(members[2]), "--out", str(unflipped)]) == 0
    np.testing.assert_allclose(EmotionClassifier(unflipped, device="cpu")(crops), member_average(members, crops),
                               atol=1e-5)
    assert json.loads(EmotionClassifier(unflipped, device="cpu").info.extra["members"])[0]["file"] == (
        f"flipped.onnx: {members[0]}")


def test_subsets_score_every_model_as_it_is_and_mirrored_whatever_tta_its_metadata_asks(tmp_path, data_dir, monkeypatch,
                                                                                       capsys):
    import sys

    from benchmarks import ensemble_subsets
    from benchmarks.label_agreement import public_test

    plain = write_linear_onnx(tmp_path / "plain.onnx", tiny_model_info().to_props(), seed=1)
    flipping = write_linear_onnx(tmp_path / "flipping.onnx", tiny_model_info(extra={"tta": "flip"}).to_props(), seed=1)
    faces, labels, _ = public_test(data_dir / "fer2013.npz")
    classifier = EmotionClassifier(plain, device="cpu")
    upright, mirror = classifier(faces), classifier(np.ascontiguousarray(faces[:, :, ::-1]))
    as_is, flipped = (upright.argmax(1) == labels).mean(), ((upright + mirror).argmax(1) == labels).mean()
    assert f"{as_is:.4f}" != f"{flipped:.4f}"  # else the table could not tell them apart
    monkeypatch.setattr(sys, "argv", ["ensemble_subsets.py", "--models", str(plain), str(flipping),
                                      "--data", str(data_dir / "fer2013.npz")])
    assert ensemble_subsets.main() == 0
    table = capsys.readouterr().out
    for name in ("plain.onnx", "flipping.onnx", "plain.onnx + flipping.onnx"):
        assert f"| {name} | {as_is:.4f} | {flipped:.4f} |" in table


def test_subsets_with_framed_add_the_app_cut_faces_the_detector_found_ranked_by_both(tmp_path, data_dir, monkeypatch,
                                                                                    capsys):
    import sys

    from benchmarks import ensemble_subsets
    from benchmarks.label_agreement import public_test
    from fer_emotion.training import reframe

    first = write_linear_onnx(tmp_path / "first.onnx", tiny_model_info().to_props(), seed=1)
    second = write_linear_onnx(tmp_path / "second.onnx", tiny_model_info(crop_margin=0.1).to_props(), seed=2)
    faces, labels, _ = public_test(data_dir / "fer2013.npz")
    found = np.arange(len(faces)) % 3 != 0
    asked = []

    def cut(given, margin, level):  # stands in for MTCNN: another picture of each face per margin, a third missed
        asked.append((margin, level))
        return np.ascontiguousarray(np.roll(255 - given[:, ::-1], round(margin * 100), axis=2)), found

    monkeypatch.setattr(reframe, "reframe_faces", cut)
    classifiers = [EmotionClassifier(path, device="cpu") for path in (first, second)]
    crops = [np.roll(255 - faces[found][:, ::-1], shift, axis=2) for shift in (15, 10)]
    upright = [c(crop) for c, crop in zip(classifiers, crops)]
    mirror = [c(np.ascontiguousarray(crop[:, :, ::-1])) for c, crop in zip(classifiers, crops)]
    truth = labels[found]
    expected = {"first.onnx": (upright[0], mirror[0]), "second.onnx": (upright[1], mirror[1]),
                "first.onnx + second.onnx": (upright[0] + upright[1], mirror[0] + mirror[1])}
    monkeypatch.setattr(sys, "argv", ["ensemble_subsets.py", "--models", str(first), str(second), "--framed",
                                      "--sort", "both", "--data", str(data_dir / "fer2013.npz")])
    assert ensemble_subsets.main() == 0
    table = capsys.readouterr().out
    assert sorted(asked) == [(0.1, False), (0.15, False)]  # each model's faces cut with its own margin
    assert f"app-framed: the {int(found.sum())} MTCNN finds" in table
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| first") or line.startswith("| sec")]
    assert len(rows) == 3
    for row in rows:
        plain, mirrored = expected[row[0].lstrip("| ")]
        assert row[3] == f"{(plain.argmax(1) == truth).mean():.4f}"
        assert row[4].rstrip(" |") == f"{((plain + mirrored).argmax(1) == truth).mean():.4f}"
    sums = [float(row[2]) + float(row[4].rstrip(" |")) for row in rows]
    assert sums == sorted(sums, reverse=True)
