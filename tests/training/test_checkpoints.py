"""A run's files after a kill at any moment, and the one-line errors fer-train gives for bad input."""

import pytest

from tests.conftest import write_linear_onnx
from tests.training.test_engine import epochs_in, train_args
from fer_emotion.training import cli, engine, train
from fer_emotion.training.checkpoint import load_checkpoint


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler catches it."""


def test_best_pt_never_lags_the_best_that_last_pt_records(synthetic, tmp_path, monkeypatch):
    run, seen = tmp_path / "run", []
    write = train.save_checkpoint

    def write_then_look(state, path):  # what a kill right after this write would leave on disk
        write(state, path)
        if (run / "last.pt").exists():
            best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
            seen.append((path.name, best["val"]["val_acc"] >= last["best_acc"]))

    monkeypatch.setattr(train, "save_checkpoint", write_then_look)
    assert cli.main(train_args(synthetic, run, "--epochs", "3")) == 0
    assert len(seen) >= 3 and all(ok for _, ok in seen), seen


def rising_validation(monkeypatch):
    """Validation accuracy that rises every epoch, so every epoch writes a new best.pt."""
    evaluate, calls = train.evaluate, []

    def rising(*args, **kwargs):
        calls.append(None)
        return {**evaluate(*args, **kwargs), "val_acc": len(calls) / 100}

    monkeypatch.setattr(train, "evaluate", rising)


def test_a_run_killed_between_best_pt_and_last_pt_resumes_to_the_right_best(synthetic, tmp_path, monkeypatch):
    run = tmp_path / "run"
    rising_validation(monkeypatch)
    write = train.save_checkpoint

    def killed_after_best_of_epoch_2(state, path):
        write(state, path)
        if path.name == "best.pt" and state["epoch"] == 2:
            raise Killed

    monkeypatch.setattr(train, "save_checkpoint", killed_after_best_of_epoch_2)
    with pytest.raises(Killed):
        cli.main(train_args(synthetic, run, "--epochs", "4"))
    assert load_checkpoint(run / "best.pt")["epoch"] == 2 and load_checkpoint(run / "last.pt")["epoch"] == 1
    monkeypatch.setattr(train, "save_checkpoint", write)
    assert cli.main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert epochs_in(run) == [1, 2, 3, 4]
    assert load_checkpoint(run / "best.pt")["epoch"] == 4  # the epoch metrics.csv calls best, as exported


def test_half_written_files_of_a_killed_run_are_removed_on_resume(synthetic, tmp_path):
    run = tmp_path / "run"
    assert cli.main(train_args(synthetic, run, "--stop-after", "1")) == 0
    leftovers = [run / "last.ptk2j4x9.tmp", run / "best.ptq8w1.tmp", run / "tmpa1b2.onnx.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a checkpoint")
    (run / "notes.tmp").write_text("the user's")
    assert cli.main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert not any(path.exists() for path in leftovers)
    assert (run / "notes.tmp").exists()


def interrupt_epoch(monkeypatch, number: int):
    """Ctrl-C as if typed during the ``number``-th epoch a run trains; returns the real epoch function."""
    one_epoch, epochs = train.train_one_epoch, []

    def interrupted(*args, **kwargs):
        epochs.append(None)
        if len(epochs) == number:
            raise KeyboardInterrupt
        return one_epoch(*args, **kwargs)

    monkeypatch.setattr(train, "train_one_epoch", interrupted)
    return one_epoch


def test_ctrl_c_says_how_to_resume(synthetic, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    one_epoch = interrupt_epoch(monkeypatch, 2)
    assert cli.main(train_args(synthetic, run, "--epochs", "3")) == 130
    assert capsys.readouterr().err.strip() == f"fer-train: stopped; continue with: fer-train train --resume {run}"
    monkeypatch.setattr(train, "train_one_epoch", one_epoch)
    assert cli.main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert epochs_in(run) == [1, 2, 3]


def test_a_run_that_failed_before_its_first_epoch_does_not_block_a_rerun(synthetic, tmp_path, capsys):
    run, picture = tmp_path / "run", tmp_path / "face.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    assert cli.main(train_args({"csv": picture}, run)) == 1  # found out while reading, after config.json
    assert (run / "config.json").exists()
    assert cli.main(train_args(synthetic, run, "--epochs", "1")) == 0
    assert epochs_in(run) == [1]


def one_line_error(capsys, argv) -> str:
    """What fer-train says for ``argv``: one line on stderr and exit status 1, whichever way it ends."""
    try:
        status = cli.main(argv)
    except SystemExit as stop:
        status, message = 1, str(stop.code)
    else:
        message = capsys.readouterr().err.strip()
    assert status == 1 and message and "\n" not in message and "Traceback" not in message, message
    return message


def test_bad_inputs_get_one_line_errors(synthetic, tmp_path, capsys):
    data = ["--data", str(synthetic["csv"])]
    run = tmp_path / "run"
    run.mkdir()
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    bare = write_linear_onnx(tmp_path / "bare.onnx", None)
    picture = tmp_path / "face.png"
    picture.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    assert "no such run folder" in one_line_error(capsys, ["train", "--resume", str(tmp_path / "nowhere")])
    assert "no last.pt" in one_line_error(capsys, ["train", "--resume", str(run)])
    (run / "last.pt").write_bytes(b"cut short")
    assert "not a readable checkpoint" in one_line_error(capsys, ["train", "--resume", str(run)])
    assert "not a text file" in one_line_error(capsys, ["train", "--data", str(picture), "--out", str(tmp_path / "r2")])
    assert "best.pt: no such checkpoint" in one_line_error(capsys, ["eval", "--model", str(tmp_path), *data])
    assert "not a readable checkpoint" in one_line_error(capsys, ["eval", "--model", str(tmp_path / "junk.pt"), *data])
    assert "metadata" in one_line_error(capsys, ["eval", "--model", str(bare), *data])
    assert "not a readable checkpoint" in one_line_error(
        capsys, ["export", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "out.onnx")])


def test_export_and_eval_take_a_run_folder_and_export_makes_its_folder(synthetic, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli.main(train_args(synthetic, run, "--epochs", "1")) == 0
    out = tmp_path / "new" / "folder" / "model.onnx"
    assert cli.main(["export", str(run), "--out", str(out)]) == 0
    assert out.is_file()
    capsys.readouterr()
    assert cli.main(["eval", "--model", str(run), "--data", str(synthetic["csv"])]) == 0
    assert "accuracy" in capsys.readouterr().out


def test_a_training_split_smaller_than_a_batch_still_takes_a_step(synthetic, tmp_path):
    run = tmp_path / "run"
    assert cli.main(train_args(synthetic, run, "--epochs", "1", "--batch-size", "128")) == 0  # 42 training faces
    (row,) = train.read_metrics(run / "metrics.csv")
    assert float(row["train_loss"]) > 0 and (run / "model.onnx").is_file()


def test_a_loss_that_stops_being_finite_stops_the_run_and_names_a_smaller_rate(synthetic, tmp_path, monkeypatch):
    run = tmp_path / "run"
    loss, calls = engine.soft_cross_entropy, []

    def exploding_in_epoch_2(*args):
        calls.append(None)
        value = loss(*args)
        return value * float("nan") if len(calls) > 6 else value  # 5 steps an epoch at batch 8

    monkeypatch.setattr(engine, "soft_cross_entropy", exploding_in_epoch_2)
    with pytest.raises(SystemExit, match=r"diverged \(epoch 2, step 2: the loss is nan\); --lr 0.05 is too high "
                                         r"for fernet here: try --lr 0.01"):
        cli.main(train_args(synthetic, run, "--epochs", "3"))
    assert load_checkpoint(run / "best.pt")["epoch"] == 1 and not (run / "model.onnx").exists()


def test_mistakes_that_need_no_data_are_said_before_it_loads(synthetic, tmp_path, monkeypatch):
    from fer_emotion.training import train as training

    monkeypatch.setattr(training, "read_sources", lambda *a, **k: pytest.fail("the data was read"))
    out = str(tmp_path / "run")
    with pytest.raises(SystemExit, match="unknown architecture 'vgg61'"):
        cli.main(train_args(synthetic, out, "--arch", "vgg61"))
    with pytest.raises(SystemExit, match="write it as NAME=LABEL"):
        cli.main(train_args(synthetic, out, "--label-map", "happiness"))
    with pytest.raises(SystemExit, match="'ecstatic' is not a label of scheme fer2013"):
        cli.main(train_args(synthetic, out, "--label-map", "happiness=ecstatic"))
    with pytest.raises(SystemExit, match="missing.csv: no such file"):
        cli.main(train_args({"csv": tmp_path / "missing.csv"}, out))


def test_vgg16_is_an_alias_of_vgg16_bn(synthetic, tmp_path):
    from fer_emotion.models import create_model

    assert type(create_model("vgg16", 7)) is type(create_model("vgg16_bn", 7))
    run = tmp_path / "run"
    assert cli.main(train_args(synthetic, run, "--arch", "vgg16", "--epochs", "1")) == 0
    assert load_checkpoint(run / "best.pt")["config"]["arch"] == "vgg16_bn"


def test_the_learning_rate_defaults_to_what_the_architecture_can_take(synthetic, tmp_path):
    for arch, expected in (("fernet", 0.05), ("B16_N4_FC1_K3_AP20", 0.01)):
        run = tmp_path / arch
        assert cli.main(train_args(synthetic, run, "--arch", arch, "--epochs", "1")) == 0
        assert load_checkpoint(run / "best.pt")["config"]["lr"] == expected
    run = tmp_path / "given"
    assert cli.main(train_args(synthetic, run, "--arch", "B16_N4_FC1_K3_AP20", "--epochs", "1", "--lr", "0.002")) == 0
    assert load_checkpoint(run / "best.pt")["config"]["lr"] == 0.002


def test_save_every_writes_checkpoints_every_n_epochs_and_at_the_end_with_the_best_kept_meanwhile(
        synthetic, tmp_path, monkeypatch):
    run, writes = tmp_path / "run", []
    write = train.save_checkpoint
    evaluate, scores = train.evaluate, iter([0.3, 0.5, 0.4, 0.2, 0.1])  # best at epoch 2, never written then

    def scored(*args, **kwargs):
        return {**evaluate(*args, **kwargs), "val_acc": next(scores)}

    def recorded(state, path):
        writes.append((path.name, state["epoch"]))
        write(state, path)

    monkeypatch.setattr(train, "evaluate", scored)
    monkeypatch.setattr(train, "save_checkpoint", recorded)
    assert cli.main(train_args(synthetic, run, "--epochs", "5", "--save-every", "3")) == 0
    assert writes == [("best.pt", 2), ("last.pt", 3), ("last.pt", 5)]
    best = load_checkpoint(run / "best.pt")
    assert (best["epoch"], best["val"]["val_acc"]) == (2, 0.5)
    assert load_checkpoint(run / "last.pt")["best_acc"] == 0.5


def test_time_limit_stops_after_an_epoch_and_the_run_resumes_to_the_end(synthetic, tmp_path, caplog):
    run = tmp_path / "run"
    with caplog.at_level("INFO"):
        assert cli.main(train_args(synthetic, run, "--epochs", "3", "--time-limit", "0.0001")) == 0
    assert epochs_in(run) == [1] and load_checkpoint(run / "last.pt")["epoch"] == 1
    assert not (run / "model.onnx").exists()  # stopped, not finished: no export until the last epoch
    assert f"time limit of 0.0001 min: stopped after epoch 1 of 3; continue with: fer-train train --resume {run}" \
        in caplog.text
    assert cli.main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert epochs_in(run) == [1, 2, 3] and (run / "model.onnx").is_file()


def test_each_epoch_line_says_the_time_left(synthetic, tmp_path, caplog):
    run = tmp_path / "run"
    with caplog.at_level("INFO"):
        assert cli.main(train_args(synthetic, run, "--epochs", "2")) == 0
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(lines) == 2 and lines[0].endswith(" left)") and "left" not in lines[1]  # none after the last epoch
    assert train.time_left([10.0], 2) == "20s"
    assert train.time_left([100.0, 300.0, 320.0, 280.0], 3) == "15m"  # the latest three: 300 s an epoch
    assert train.time_left([234.0], 60) == "3h 54m"


def test_a_recipe_shares_its_time_limit_between_phases(synthetic, tmp_path, monkeypatch, caplog):
    from fer_emotion.training import recipe

    limits = []
    real_main = train.main

    def spy(args, *rest):
        if args.recipe is None:  # a phase, not the command that names the recipe
            limits.append(args.time_limit)
        return real_main(args, *rest)

    monkeypatch.setattr(train, "main", spy)
    run = tmp_path / "recipe"
    args = ["train", "--recipe", "fer2013", "--data", str(synthetic["csv"]), "--out", str(run), "--epochs", "2",
            "--batch-size", "8", "--no-progress", "--threads", "1", "--arch", "fernet", "--time-limit", "0.0001"]
    with caplog.at_level("INFO"):
        assert cli.main(args) == 0
    assert len(limits) == 1 and 0 < limits[0] <= 0.0001  # phase 1 had what was left; phase 2 never began
    assert not (run / "phase2").exists()
    assert f"continue with: fer-train train --resume {run}" in caplog.text
    assert recipe.ONE_COMMAND_ONLY >= {"time_limit"}  # a resumed recipe is not held to the first command's limit


@pytest.mark.parametrize("option", [("--time-limit", "-1"), ("--save-every", "0")])
def test_time_limit_and_save_every_out_of_range_are_refused(synthetic, tmp_path, option):
    with pytest.raises(SystemExit, match=option[0]):
        cli.main(train_args(synthetic, tmp_path / "bad", *option))
    assert not (tmp_path / "bad").exists()
