import copy
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_emotion.models import create_model
from tests.training.conftest import plateau_cuts_follow_validation
from fer_emotion.training import cli
from fer_emotion.training.checkpoint import CheckpointError, initial_weights, load_checkpoint, load_model_state
from fer_emotion.training.labels import FER2013
from fer_emotion.training.train import read_metrics, warn_short_ema

REPO = Path(__file__).resolve().parents[2]


def train_args(synthetic, out, *extra):
    return ["train", "--data", str(synthetic["csv"]), "--out", str(out), "--epochs", "2", "--batch-size", "8",
            "--no-progress", "--threads", "1", *extra]


def epochs_in(run):
    return [int(row["epoch"]) for row in read_metrics(run / "metrics.csv")]


def val_accuracies(run):
    return [float(row["val_acc"]) for row in read_metrics(run / "metrics.csv")]


@pytest.mark.parametrize("arch", ["fernet", "fernet_s2", "fernet_std", "cnn", "resnet9", "B16_N4_FC1_K3_AP20", "resnet18"])
def test_one_epoch_smoke_per_family(synthetic, tmp_path, arch):
    run = tmp_path / arch
    assert cli.main(train_args(synthetic, run, "--arch", arch, "--epochs", "1")) == 0
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.csv", "last.pt", "best.pt", "curves.png", "model.onnx"}
    assert epochs_in(run) == [1]


def test_run_folder_is_not_overwritten_without_asking(synthetic, tmp_path):
    run = tmp_path / "run"
    assert cli.main(train_args(synthetic, run, "--epochs", "1")) == 0
    with pytest.raises(SystemExit, match="already holds a run"):
        cli.main(train_args(synthetic, run, "--epochs", "1"))
    assert cli.main(train_args(synthetic, run, "--epochs", "1", "--overwrite")) == 0


def test_resume_continues_with_the_same_optimiser_state(synthetic, tmp_path):
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    assert cli.main(train_args(synthetic, straight)) == 0
    assert cli.main(train_args(synthetic, interrupted, "--stop-after", "1")) == 0
    assert load_checkpoint(interrupted / "last.pt")["epoch"] == 1
    torch.set_num_threads(2)
    assert cli.main(["train", "--resume", str(interrupted), "--no-progress"]) == 0
    assert torch.get_num_threads() == 1  # the run's own thread count
    assert epochs_in(interrupted) == [1, 2]
    a, b = load_checkpoint(straight / "last.pt"), load_checkpoint(interrupted / "last.pt")
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-4, atol=1e-5)
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()


def test_run_killed_mid_epoch_resumes(synthetic, tmp_path):
    run = tmp_path / "killed"
    command = [sys.executable, "-m", "fer_emotion.training.cli", *train_args(synthetic, run, "--epochs", "40", "--arch", "resnet9")]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (run / "last.pt").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (run / "last.pt").exists()
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    state = load_checkpoint(run / "last.pt")  # the atomic write left a whole checkpoint
    done = state["epoch"]
    config = json.loads((run / "config.json").read_text())
    assert config["epochs"] == 40
    torch.set_num_threads(1)
    resume = ["train", "--resume", str(run), "--no-progress", "--stop-after", str(done + 1), "--threads", "2"]
    assert cli.main(resume) == 0  # continued with another thread count than it started with
    assert torch.get_num_threads() == 2
    torch.set_num_threads(1)
    assert epochs_in(run) == list(range(1, done + 2))
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_checkpoint_from_another_architecture_is_refused(synthetic, tmp_path):
    run = tmp_path / "run"
    assert cli.main(train_args(synthetic, run, "--epochs", "1")) == 0
    state = load_checkpoint(run / "best.pt")
    with pytest.raises(CheckpointError, match="do not fit architecture 'cnn'"):
        load_model_state(create_model("cnn", 7), state["model"], "cnn", run / "best.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_init_starts_from_a_run_folder_a_checkpoint_or_a_state_dict(synthetic, tmp_path):
    source = tmp_path / "source"
    assert cli.main(train_args(synthetic, source, "--epochs", "3")) == 0
    trained = load_checkpoint(source / "best.pt")
    torch.save(trained["model"], tmp_path / "plain.pt")
    for path in (source, source / "best.pt", tmp_path / "plain.pt"):
        weights = initial_weights(path, FER2013)
        assert weights.keys() == trained["model"].keys()
        assert all(torch.equal(weights[name], trained["model"][name]) for name in weights)

    # a run that barely moves its weights scores what it started from; from scratch it scores far less
    def first_val(run, *extra):
        assert cli.main(train_args(synthetic, run, "--epochs", "1", "--lr", "1e-6", *extra)) == 0
        return val_accuracies(run)[0]
    best = max(val_accuracies(source))
    assert best >= 0.5
    assert first_val(tmp_path / "warm", "--init", str(source)) >= best - 0.15
    assert first_val(tmp_path / "cold") < best - 0.3

    with pytest.raises(CheckpointError, match="are not this run's"):
        initial_weights(source, ["a", "b"])
    torch.save([1, 2], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="neither a fer-train checkpoint nor a state dict"):
        initial_weights(tmp_path / "list.pt", FER2013)
    with pytest.raises(SystemExit, match="no such checkpoint to start from"):
        cli.main(train_args(synthetic, tmp_path / "missing_run", "--init", str(tmp_path / "missing")))
    assert not (tmp_path / "missing_run").exists()

    # a resumed run continues from its own checkpoint, even once its --init source is gone
    resumed = tmp_path / "resumed"
    assert cli.main(train_args(synthetic, resumed, "--init", str(source), "--stop-after", "1")) == 0
    shutil.rmtree(source)
    assert cli.main(["train", "--resume", str(resumed), "--no-progress"]) == 0
    assert epochs_in(resumed) == [1, 2]


def test_soft_ferplus_and_class_weights_train(synthetic, tmp_path):
    run = tmp_path / "plus"
    args = train_args(synthetic, run, "--epochs", "1", "--labels", "ferplus", "--ferplus", str(synthetic["votes"]),
                      "--soft", "--class-weights", "--mixup", "0.2", "--erase", "0.5", "--noise", "0.05", "--ema", "0.9",
                      "--amp", "--cutmix", "--scale", "0.1")
    assert cli.main(args) == 0
    assert load_checkpoint(run / "best.pt")["classes"][-1] == "contempt"
    floored = tmp_path / "floored"
    assert cli.main(train_args(synthetic, floored, "--epochs", "1", "--labels", "ferplus", "--ferplus",
                               str(synthetic["votes"]), "--soft", "--soft-floor", "0.25")) == 0
    assert json.loads((floored / "config.json").read_text())["soft_floor"] == 0.25
    for bad in (["--soft-floor", "0.25"], ["--soft", "--soft-floor", "1.5"]):
        with pytest.raises(SystemExit, match="--soft-floor takes a probability"):
            cli.main(train_args(synthetic, tmp_path / "bad", "--labels", "ferplus", "--ferplus", str(synthetic["votes"]), *bad))
        assert not (tmp_path / "bad").exists()


def test_distillation_mixes_the_teachers_probabilities_into_the_targets(synthetic, tmp_path):
    from fer_emotion.training.datasets import load_splits
    from fer_emotion.training.distill import distilled_targets, load_teachers, teacher_probabilities

    teacher = tmp_path / "teacher"
    assert cli.main(train_args(synthetic, teacher, "--epochs", "3")) == 0
    train = load_splits([synthetic["csv"]], "fer2013")["train"]
    onehot = torch.nn.functional.one_hot(train.labels, 7).float()
    size = train.images.shape[-1]
    warm_teachers = load_teachers([teacher], FER2013, 1.0, size)
    warm = teacher_probabilities(warm_teachers.teachers[0], train.images)
    hot = teacher_probabilities(load_teachers([teacher], FER2013, 4.0, size).teachers[0], train.images)
    assert torch.allclose(warm.sum(1), torch.ones(len(train)), atol=1e-5)
    assert torch.equal(warm.argmax(1), hot.argmax(1))  # a temperature softens, it does not reorder
    entropy = lambda p: -(p * p.log()).sum(1).mean()  # noqa: E731
    assert entropy(hot) > entropy(warm)
    both = load_teachers([teacher, teacher / "best.pt"], FER2013, 1.0, size)
    mixed = distilled_targets(both, train.images, onehot, 0.25)
    assert torch.allclose(mixed, 0.75 * onehot + 0.25 * warm, atol=1e-6)
    # the run's exported model as the teacher: the same probabilities through onnxruntime
    as_onnx = teacher_probabilities(load_teachers([teacher / "model.onnx"], FER2013, 1.0, size).teachers[0], train.images)
    assert torch.allclose(as_onnx, warm, atol=1e-4)

    student = tmp_path / "student"
    assert cli.main(train_args(synthetic, student, "--epochs", "1", "--teacher", str(teacher), "--distill", "0.7")) == 0
    config = json.loads((student / "config.json").read_text())
    assert config["teacher"] == [str(teacher)] and config["distill"] == 0.7 and not config["distill_online"]
    online = tmp_path / "online"
    assert cli.main(train_args(synthetic, online, "--epochs", "1", "--teacher", str(teacher / "model.onnx"),
                               "--distill-online")) == 0
    assert json.loads((online / "config.json").read_text())["distill_online"] is True
    with pytest.raises(SystemExit, match="weight must lie in"):
        cli.main(train_args(synthetic, tmp_path / "bad", "--teacher", str(teacher), "--distill", "1.5"))
    assert not (tmp_path / "bad").exists()  # refused before a run folder is made
    with pytest.raises(SystemExit, match="no such teacher checkpoint"):
        cli.main(train_args(synthetic, tmp_path / "bad", "--teacher", str(tmp_path / "missing")))
    with pytest.raises(SystemExit, match="no such teacher model file"):
        cli.main(train_args(synthetic, tmp_path / "bad", "--teacher", str(tmp_path / "missing.onnx")))
    assert not (tmp_path / "bad").exists()
    for wrong in (teacher, teacher / "model.onnx"):
        with pytest.raises(SystemExit, match="the teacher's classes"):
            cli.main(train_args(synthetic, tmp_path / "plus", "--labels", "ferplus", "--ferplus",
                                str(synthetic["votes"]), "--teacher", str(wrong)))


def test_a_resumed_run_reads_its_teachers_targets_back_and_keeps_them_when_a_teacher_changes(synthetic, tmp_path,
                                                                                              monkeypatch, caplog):
    from fer_emotion.training import distill

    teacher, other = tmp_path / "teacher", tmp_path / "other"
    assert cli.main(train_args(synthetic, teacher, "--epochs", "1")) == 0
    assert cli.main(train_args(synthetic, other, "--epochs", "1", "--seed", "5")) == 0
    student = tmp_path / "student"
    assert cli.main(train_args(synthetic, student, "--epochs", "3", "--stop-after", "1", "--teacher", str(teacher))) == 0
    first = torch.load(student / "teacher_targets.pt", weights_only=True)
    assert first["teachers"] == {str(teacher / "best.pt"): distill.file_digest(teacher / "best.pt")}
    shutil.copy(other / "best.pt", teacher / "best.pt")  # the teacher replaced while the run was stopped
    scored = []
    real = distill.distilled_targets
    monkeypatch.setattr(distill, "distilled_targets", lambda *a, **k: scored.append(1) or real(*a, **k))
    with caplog.at_level("INFO", logger="fer_emotion.training.distill"):
        assert cli.main(["train", "--resume", str(student), "--no-progress", "--stop-after", "2"]) == 0
    assert scored == []  # read back, not scored again by the new teacher
    messages = [r.getMessage() for r in caplog.records]
    assert any("has changed since this run began" in m for m in messages)
    assert torch.equal(torch.load(student / "teacher_targets.pt", weights_only=True)["targets"], first["targets"])
    (student / "teacher_targets.pt").write_bytes(b"damaged")
    with caplog.at_level("INFO", logger="fer_emotion.training.distill"):
        assert cli.main(["train", "--resume", str(student), "--no-progress"]) == 0
    assert scored == [1] and any("is unreadable" in r.getMessage() for r in caplog.records)
    assert epochs_in(student) == [1, 2, 3]
    again = torch.load(student / "teacher_targets.pt", weights_only=True)  # scored again, by the teacher it has now
    assert again["teachers"][str(teacher / "best.pt")] == distill.file_digest(other / "best.pt")
    assert not torch.equal(again["targets"], first["targets"])
    assert cli.main(train_args(synthetic, student, "--epochs", "1", "--overwrite")) == 0
    assert not (student / "teacher_targets.pt").exists()  # a new run in the folder keeps no old targets


def test_fold_numbers_are_fixed_balanced_and_parsed_strictly():
    from fer_emotion.training.datasets import fold_numbers, parse_fold

    numbers = fold_numbers(42, 4)
    assert torch.equal(numbers, fold_numbers(42, 4))  # the same for every run, whatever its seed
    torch.manual_seed(123)
    assert torch.equal(numbers, fold_numbers(42, 4))
    assert sorted(torch.bincount(numbers).tolist()) == [0, 10, 10, 11, 11]  # folds 1-4 (no fold 0), sizes within one
    assert not torch.equal(numbers[:21], torch.arange(21) % 4 + 1)  # shuffled, not dealt in file order
    assert parse_fold("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "1/1", "x", "1/2/3", "1.5/4"):
        with pytest.raises(ValueError):
            parse_fold(bad)


def test_cross_fitted_teachers_each_judge_only_the_faces_they_left_out(synthetic, tmp_path, caplog):
    from fer_emotion.training.datasets import fold_numbers, load_splits
    from fer_emotion.training.distill import cross_fitted, distilled_targets, load_teachers, teacher_probabilities

    halves = [tmp_path / "fold1", tmp_path / "fold2"]
    with caplog.at_level("INFO", logger="fer_emotion.training.train"):
        for number, run in enumerate(halves, 1):
            assert cli.main(train_args(synthetic, run, "--epochs", "2", "--fold", f"{number}/2")) == 0
    train = load_splits([synthetic["csv"]], "fer2013")["train"]
    folds = fold_numbers(len(train), 2)
    counted = [r.getMessage() for r in caplog.records if r.getMessage().startswith("train ")]
    assert [int(line.split()[1]) for line in counted] == [int((folds != 1).sum()), int((folds != 2).sum())]
    assert json.loads((halves[0] / "config.json").read_text())["fold"] == "1/2"

    size, onehot = train.images.shape[-1], torch.nn.functional.one_hot(train.labels, 7).float()
    teachers = load_teachers(halves, FER2013, 1.0, size)
    assert cross_fitted(teachers, [str(synthetic["csv"])]) == 2
    targets = distilled_targets(teachers, train.images, onehot, 0.5, folds)
    for number, teacher in enumerate(teachers.teachers, 1):
        mine = folds == number  # judged by the teacher that left them out, and only by it
        expected = 0.5 * onehot[mine] + 0.5 * teacher_probabilities(teacher, train.images[mine])
        assert torch.allclose(targets[mine], expected, atol=1e-6)
    other = teacher_probabilities(teachers.teachers[1], train.images[folds == 1])
    assert not torch.allclose(targets[folds == 1], 0.5 * onehot[folds == 1] + 0.5 * other, atol=1e-3)

    both = ["--teacher", str(halves[0]), "--teacher", str(halves[1])]
    student = tmp_path / "student"
    assert cli.main(train_args(synthetic, student, "--epochs", "1", *both)) == 0
    assert (student / "best.pt").is_file()
    refusals = {
        "cannot be mixed": [*both, "--teacher", str(halves[1] / "model.onnx")],
        "no teacher left out fold 2/2": ["--teacher", str(halves[0])],
        "not with --distill-online": [*both, "--distill-online"],
    }
    for message, extra in refusals.items():
        with pytest.raises(SystemExit, match=message):
            cli.main(train_args(synthetic, tmp_path / "bad", "--epochs", "1", "--overwrite", *extra))
    renamed = shutil.copy(synthetic["csv"], tmp_path / "other.csv")  # the same faces under another name: refused
    with pytest.raises(SystemExit, match="its folds are not this run's"):
        cli.main(train_args({"csv": renamed}, tmp_path / "bad", "--epochs", "1", "--overwrite", *both))
    with pytest.raises(SystemExit, match="--fold: a fold is written I/K"):
        cli.main(train_args(synthetic, tmp_path / "worse", "--fold", "half"))
    with pytest.raises(SystemExit, match="not with --limit or --smoke"):  # its folds would not be a student's
        cli.main(train_args(synthetic, tmp_path / "worse", "--fold", "1/2", "--limit", "20"))
    assert not (tmp_path / "worse").exists()


def test_an_online_teacher_scores_the_very_batch_the_student_sees():
    from fer_emotion.training.augment import AugmentConfig
    from fer_emotion.training.datasets import SplitData
    from fer_emotion.training.engine import LossConfig, train_one_epoch

    torch.manual_seed(0)
    data = SplitData(torch.randint(0, 256, (64, 48, 48), dtype=torch.uint8), torch.randint(0, 7, (64,)), None)
    model = create_model("fernet", 7)
    seen, scored = [], []
    model.register_forward_hook(lambda module, inputs, output: seen.append((inputs[0].clone(), output.detach())))

    def teacher(x, mean, std):
        assert (mean, std) == (0.5, 0.25)
        scored.append(x.clone())
        return torch.full((len(x), 7), 1 / 7)

    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    stats = train_one_epoch(model, data, optimizer, None, 1, batch_size=16, mean=0.5, std=0.25,
                            augment_cfg=AugmentConfig(rotate=10, erase=0.5, noise=0.1), loss_cfg=LossConfig(),
                            generator=torch.Generator().manual_seed(0), progress=False, teacher=teacher, distill=1.0)
    assert len(scored) == len(seen) == 4
    for x, (student_x, _) in zip(scored, seen):
        assert torch.equal(x, student_x)  # augmented, noised and erased alike
    # with distill 1 the labels drop out: each batch's loss is the cross entropy against the teacher's uniform
    expected = np.mean([float(-torch.log_softmax(out, 1).mean(1).mean()) for _, out in seen])
    assert stats["train_loss"] == pytest.approx(expected, rel=1e-5)


def test_sharpness_aware_gradients_are_taken_uphill_and_leave_weights_and_norm_statistics_alone():
    from fer_emotion.training.engine import sharpness_aware_grads

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                                torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,))
    loss = lambda net: torch.nn.functional.cross_entropy(net(x), y)  # noqa: E731
    loss(model).backward()
    plain = [p.grad.clone() for p in model.parameters()]
    weights = [p.detach().clone() for p in model.parameters()]
    stats = {k: v.clone() for k, v in model[1].named_buffers()}

    # The same gradient by hand: a copy moved 0.5 along the normalised gradient, differentiated there.
    uphill = copy.deepcopy(model)
    norm = torch.linalg.vector_norm(torch.cat([g.flatten() for g in plain]))
    with torch.no_grad():
        for p, g in zip(uphill.parameters(), plain):
            p.add_(0.5 * g / norm)
    uphill.zero_grad()
    loss(uphill).backward()

    sharpness_aware_grads(model, lambda: loss(model), 0.5)
    for p, w, g, expected in zip(model.parameters(), weights, plain, uphill.parameters()):
        assert torch.allclose(p, w, atol=1e-6)  # the weights are back where they were
        assert torch.allclose(p.grad, expected.grad, atol=1e-5)
    assert not all(torch.allclose(p.grad, g) for p, g in zip(model.parameters(), plain))
    for name, buffer in model[1].named_buffers():  # the uphill pass left the running statistics as they were
        assert torch.equal(buffer, stats[name]), name


def test_sam_option_trains_and_is_refused_below_zero(synthetic, tmp_path):
    run = tmp_path / "sam"
    assert cli.main(train_args(synthetic, run, "--epochs", "1", "--sam", "0.05")) == 0
    assert json.loads((run / "config.json").read_text())["sam"] == 0.05
    assert epochs_in(run) == [1]
    with pytest.raises(SystemExit, match="--sam takes a radius"):
        cli.main(train_args(synthetic, tmp_path / "bad", "--sam", "-0.1"))
    assert not (tmp_path / "bad").exists()


def test_reframe_option_trains_on_the_reframed_share_and_scores_framed_val(synthetic, tmp_path, monkeypatch):
    from fer_emotion.training import engine, reframe

    asked, picked = [], []

    def fake_reframe(faces, margin, level, threads, progress):  # the detector finds no face in synthetic bars
        asked.append((len(faces), margin, level))
        return 255 - faces, np.ones(len(faces), bool)

    def spy_pick(images, reframed, share, generator):
        picked.append((reframed is not None and torch.equal(reframed, 255 - images), share))
        return engine_pick(images, reframed, share, generator)

    engine_pick = engine.pick_faces
    monkeypatch.setattr(reframe, "reframe_faces", fake_reframe)
    monkeypatch.setattr(engine, "pick_faces", spy_pick)
    run = tmp_path / "reframe"
    assert cli.main(train_args(synthetic, run, "--epochs", "1", "--reframe", "0.5", "--crop-margin", "0.1")) == 0
    assert json.loads((run / "config.json").read_text())["reframe"] == 0.5
    assert asked == [(42, 0.1, False), (14, 0.1, False)]  # training faces, then validation faces
    assert picked and all(picked_row == (True, 0.5) for picked_row in picked)
    assert 0 <= float(read_metrics(run / "metrics.csv")[0]["val_framed_acc"]) <= 1
    asked.clear()  # a fold run frames the whole split (one cache entry for every fold), then
    picked.clear()
    assert cli.main(train_args(synthetic, tmp_path / "fold", "--epochs", "1", "--reframe", "0.5", "--crop-margin",
                               "0.1", "--fold", "2/3")) == 0  # leaves its fold out of both the faces and their framings
    assert asked == [(42, 0.1, False), (14, 0.1, False)]
    assert picked and all(picked_row == (True, 0.5) for picked_row in picked)
    with pytest.raises(SystemExit, match="--reframe takes a share"):
        cli.main(train_args(synthetic, tmp_path / "bad", "--reframe", "1.5"))
    assert not (tmp_path / "bad").exists()


def test_ferplus_run_picks_best_by_its_vote_rule_and_reports_the_other(synthetic, tmp_path):
    from fer_emotion.app.core.classifier import EmotionClassifier
    from tests.training.conftest import SPLITS, votes_for, write_votes
    from fer_emotion.training.datasets import load_splits
    from fer_emotion.training.engine import evaluate

    votes = votes_for(synthetic["labels"])
    public = [i for i, usage in enumerate(SPLITS) if usage == "PublicTest"]
    for row in public[:3]:  # neutral and sadness tie: plurality keeps them as neutral, majority drops them
        votes[row] = [3, 0, 0, 3, 2, 0, 0, 0, 2, 0]
    votes[public[3]] = [0, 7, 0, 0, 0, 0, 0, 0, 0, 1]  # a lone not-a-face vote: only majority keeps it
    path = write_votes(tmp_path / "votes.csv", votes)
    vals = {rule: load_splits([synthetic["csv"]], "ferplus", path, vote_rule=rule)["val"]
            for rule in ("plurality", "majority")}
    assert (len(vals["plurality"]), len(vals["majority"])) == (13, 11)
    for rule, other in (("majority", "plurality"), ("plurality", "majority")):
        run = tmp_path / rule
        assert cli.main(train_args(synthetic, run, "--epochs", "3", "--labels", "ferplus", "--ferplus", str(path),
                                   "--soft", "--vote-rule", rule)) == 0
        rows = read_metrics(run / "metrics.csv")
        best = load_checkpoint(run / "best.pt")
        picked = rows[int(np.argmax([float(r["val_acc"]) for r in rows]))]
        assert best["epoch"] == int(picked["epoch"])  # best.pt is the epoch with the best val_acc under `rule`
        model = create_model("fernet", 8)
        model.load_state_dict(best["model"])
        for scored, column in ((rule, "val_acc"), (other, f"val_{other}_acc")):
            accuracy = evaluate(model, vals[scored], mean=0.5, std=0.25)["val_acc"]
            assert accuracy == pytest.approx(float(picked[column]), abs=1e-5)
        assert EmotionClassifier(run / "model.onnx", device="cpu").info.extra["vote_rule"] == rule
    with pytest.raises(SystemExit, match="--vote-rule majority is for --labels ferplus"):
        cli.main(train_args(synthetic, tmp_path / "bad", "--vote-rule", "majority"))
    assert not (tmp_path / "bad").exists()


def test_an_average_too_slow_for_the_run_is_warned_about_with_a_decay_that_fits(synthetic, tmp_path, caplog):
    with caplog.at_level("WARNING", logger="fer_emotion.training.train"):
        assert cli.main(train_args(synthetic, tmp_path / "slow", "--ema", "0.999")) == 0
    warned = [r.getMessage() for r in caplog.records if "--ema" in r.getMessage()]
    # 42 training faces, batches of 8: 5 steps an epoch, 10 in all; 0.999**10 of the first weights stay
    assert len(warned) == 1 and "over this run's 10 steps leaves 99.0% of the untrained first weights" in warned[0]
    advised = float(re.search(r"--ema (0\.\d+) or less", warned[0]).group(1))
    assert advised ** 10 < 0.01 < (advised + 0.001) ** 10  # the largest decay that leaves under 1%

    caplog.clear()
    with caplog.at_level("WARNING", logger="fer_emotion.training.train"):
        warn_short_ema(advised, 10)
        # a second phase's average starts from trained weights, so keeping them is no fault
        assert cli.main(train_args(synthetic, tmp_path / "phase2", "--ema", "0.999", "--init", str(tmp_path / "slow"))) == 0
    assert not [r for r in caplog.records if "--ema" in r.getMessage()]


def test_plateau_schedule_cuts_the_rate_when_validation_stops_rising_and_resumes_with_it(synthetic, tmp_path):
    run = tmp_path / "plateau"
    # a rate too small to change the validation accuracy: every epoch after the first is a plateau
    args = train_args(synthetic, run, "--schedule", "plateau", "--plateau-patience", "0", "--plateau-factor", "0.25",
                      "--lr", "1e-7", "--epochs", "4", "--stop-after", "2")
    assert cli.main(args) == 0
    assert cli.main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert epochs_in(run) == [1, 2, 3, 4]
    rows = read_metrics(run / "metrics.csv")
    assert "val_raw_acc" not in rows[0]  # without --ema, val_acc is the training weights' own
    assert plateau_cuts_follow_validation(run, 0.25) >= 2  # cuts before and after the resume
    assert float(rows[0]["lr"]) == pytest.approx(1e-7)  # no warm-up, no per-step decay

    # with --ema the rate follows the training weights: a rate that trains while the average (0.999 of the first
    # weights kept each step) still scores the untrained net
    averaged = tmp_path / "averaged"
    args = train_args(synthetic, averaged, "--schedule", "plateau", "--plateau-patience", "0", "--ema", "0.999",
                      "--lr", "0.05", "--epochs", "6")
    assert cli.main(args) == 0
    rows = read_metrics(averaged / "metrics.csv")
    raw, avg = [float(r["val_raw_acc"]) for r in rows], [float(r["val_acc"]) for r in rows]
    assert max(raw) > max(avg)
    plateau_cuts_follow_validation(averaged, 0.5)

    for bad in (["--plateau-factor", "1"], ["--plateau-factor", "0"], ["--plateau-patience", "-1"]):
        with pytest.raises(SystemExit, match="--plateau-factor takes a factor between 0 and 1"):
            cli.main(train_args(synthetic, tmp_path / "bad", "--schedule", "plateau", *bad))
    assert not (tmp_path / "bad").exists()
