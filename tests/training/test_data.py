import numpy as np
import pytest
import torch

from fer_emotion.training.data import DataError, read_fer_csv, read_folder, read_votes
from fer_emotion.training.datasets import floored, level_eyes, load_splits
from tests.training.conftest import SPLITS


def test_csv_reads_images_splits_and_labels(synthetic):
    source = read_fer_csv(synthetic["csv"])
    np.testing.assert_array_equal(source.pixels, synthetic["images"])
    np.testing.assert_array_equal(source.labels, synthetic["labels"])
    assert source.split.tolist().count(1) == SPLITS.count("PublicTest")


@pytest.mark.parametrize("bad_row, message", [
    ("0,1 2 3,Training", "line 3: expected 2304 pixel values, found 3"),
    ("0," + " ".join(["x"] * 2304) + ",Training", "line 3: invalid literal"),
    ("0," + " ".join(["1"] * 2304) + ",Holiday", "line 3: unknown split 'Holiday'"),
    ("9," + " ".join(["1"] * 2304) + ",Training", "line 3: emotion 9 is outside"),
])
def test_malformed_csv_rows_name_the_line(tmp_path, synthetic, bad_row, message):
    lines = synthetic["csv"].read_text().splitlines()
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines[:2] + [bad_row] + lines[2:]) + "\n")
    with pytest.raises(DataError, match=message):
        read_fer_csv(path)
    skipped = read_fer_csv(path, skip_bad=True)
    assert skipped.skipped == 1 and len(skipped.pixels) == len(SPLITS)


def test_real_kaggle_sample_parses(data_dir):
    source = read_fer_csv(data_dir / "fer2013_sample.csv")
    assert source.pixels.shape == (150, 48, 48)
    assert source.labels[:12].tolist() == [0, 0, 2, 4, 6, 2, 4, 3, 3, 2, 0, 6]


def test_folder_reads_and_resizes(synthetic):
    source = read_folder(synthetic["folder"])
    assert source.pixels.shape == (len(SPLITS), 48, 48)
    assert set(source.class_names) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}


def test_folder_errors(tmp_path):
    (tmp_path / "train" / "happy").mkdir(parents=True)
    with pytest.raises(DataError, match="no images found"):
        read_folder(tmp_path)
    (tmp_path / "train" / "giggly").mkdir()
    from PIL import Image

    Image.new("L", (48, 48)).save(tmp_path / "train" / "giggly" / "a.png")
    with pytest.raises(ValueError, match="class 'giggly' matches no label of scheme fer2013"):
        load_splits([tmp_path], "fer2013")


def test_vote_file_row_count_must_match(tmp_path, synthetic):
    with pytest.raises(DataError, match="has 63 vote rows but the FER2013 data has 10"):
        read_votes(synthetic["votes"], 10)


def test_splits_merge_sources_with_the_same_scheme(synthetic):
    splits = load_splits([synthetic["csv"], synthetic["folder"]], "fer2013")
    assert len(splits["train"]) == 2 * SPLITS.count("Training")
    assert len(splits["val"]) == 2 * SPLITS.count("PublicTest")


def test_ferplus_soft_targets(synthetic):
    splits = load_splits([synthetic["csv"]], "ferplus", synthetic["votes"])
    train = splits["train"]
    assert train.soft is not None and train.soft.shape[1] == 8
    np.testing.assert_allclose(train.soft.sum(1).numpy(), 1.0)
    # row 0 is angry: 8 anger votes and 2 neutral votes
    np.testing.assert_allclose(train.soft[0].numpy(), [0.2, 0, 0, 0, 0.8, 0, 0, 0], atol=1e-6)


def test_majority_vote_rule_keeps_only_faces_with_a_clear_majority(synthetic, tmp_path):
    from tests.training.conftest import votes_for, write_votes

    votes = votes_for(synthetic["labels"])
    public = [i for i, usage in enumerate(SPLITS) if usage == "PublicTest"]
    votes[public[0]] = [3, 0, 0, 3, 2, 0, 0, 0, 2, 0]  # neutral and sadness tie on 3 of 10: plurality takes neutral, no majority
    votes[public[1]] = [0, 7, 0, 0, 0, 0, 0, 0, 0, 1]  # one not-a-face vote: dropped by plurality, kept by majority
    path = write_votes(tmp_path / "votes.csv", votes)
    plurality = load_splits([synthetic["csv"]], "ferplus", path)["val"]
    majority = load_splits([synthetic["csv"]], "ferplus", path, vote_rule="majority")["val"]
    assert len(plurality) == len(public) - 1 and len(majority) == len(public) - 1
    assert plurality.labels[0].item() == 0  # public[0], neutral by plurality
    assert majority.labels[0].item() == 1  # public[1], happiness; public[0] is not there


def test_soft_floor_drops_lone_votes_and_keeps_even_rows():
    soft = torch.tensor([[0.1, 0.0, 0.7, 0.2], [0.25, 0.25, 0.25, 0.25]])
    kept = floored(soft, 0.15)
    torch.testing.assert_close(kept[0], torch.tensor([0.0, 0.0, 7 / 9, 2 / 9]))
    torch.testing.assert_close(kept[1], soft[1])
    torch.testing.assert_close(floored(soft, 0.3)[1], soft[1])  # nothing reaches 0.3: the row stays as it was


def test_level_eyes_turns_tilted_real_faces_upright(astronaut):
    from fer_emotion.app.core.crop import crop_face, to_gray, turn
    from fer_emotion.app.core.mtcnn import OnnxNets, face_rolls

    face = crop_face(to_gray(astronaut), (181, 62, 268, 172), 48, 0.0)
    blank = np.full((48, 48), 90, np.uint8)
    faces = np.stack([face, turn(face, 20), turn(face, -20), blank])
    nets = OnnxNets(device="cpu")
    before, probs = face_rolls(faces, nets)
    assert probs[:3].min() > 0.9 and probs[3] < 0.7
    assert before[1] - before[0] == pytest.approx(-20, abs=5) and before[2] - before[0] == pytest.approx(20, abs=5)
    levelled = level_eyes(torch.from_numpy(faces)).numpy()
    after, _ = face_rolls(levelled, nets)
    assert np.abs(after[:3]).max() < 4
    np.testing.assert_array_equal(levelled[3], blank)  # no face found: left as it is
