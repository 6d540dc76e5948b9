"""``fer-train train --recipe``: the shipped models' training as named recipes, phases chained."""

import argparse
import dataclasses
import json
import re
import shlex
from pathlib import Path

import pytest

from fer_emotion.app.core.classifier import EmotionClassifier
from fer_emotion.app.core.shipped import models_folder
from fer_emotion.training import cli
from fer_emotion.training.cli import typed_train_options
from fer_emotion.training.recipe import phase_arguments, read_recipe, recipe_names
from fer_emotion.training.train import TrainConfig, add_train_arguments
from tests.conftest import REPO
from tests.training.test_checkpoints import interrupt_epoch
from tests.training.test_engine import epochs_in

SHIPPED = ("engagement", "fer2013", "fer2013_level", "fer2013_light", "fer2013_vgg", "fer2013_wide", "ferplus")
MACHINE = {"data", "ferplus", "out", "init", "threads", "progress", "device"}  # where and how, not what


def recipe_args(synthetic, out, name, *extra):
    return ["train", "--recipe", name, "--data", str(synthetic["csv"]), "--out", str(out), "--epochs", "1",
            "--batch-size", "8", "--no-progress", "--threads", "1", *extra]


def config(run):
    return json.loads((run / "config.json").read_text())


def test_a_recipe_chains_its_phases_and_exports_the_last(synthetic, tmp_path):
    run = tmp_path / "run"
    assert cli.main(recipe_args(synthetic, run, "fer2013")) == 0
    first, second = config(run / "phase1"), config(run / "phase2")
    assert (first["arch"], first["lr"], first["rotate"], first["init"]) == ("fernet", 0.05, 10, None)
    assert (second["lr"], second["schedule"], second["rotate"], second["erase"]) == (0.005, "cosine", 0, 0)
    assert second["init"] == str(run / "phase1") and second["weight_decay"] == first["weight_decay"] == 1e-3
    assert first["epochs"] == second["epochs"] == 1 and first["batch_size"] == 8  # typed options win, every phase
    model = EmotionClassifier(run / "fer2013.onnx", device="cpu")
    assert model.info.extra["precision"] == "int8" and model.info.arch == "fernet"


def test_the_default_recipe_is_taught_by_the_shipped_ensemble_and_averages_each_face_with_its_mirror(
        synthetic, tmp_path):
    run = tmp_path / "run"
    assert cli.main(recipe_args(synthetic, run, "fer2013_vgg")) == 0
    first, second = config(run / "phase1"), config(run / "phase2")
    ensemble = str(models_folder() / "fer2013_ensemble.onnx")
    assert first["teacher"] == second["teacher"] == [ensemble] and first["amp"] and second["reframe"] == 1.0
    info = EmotionClassifier(run / "fer2013_vgg.onnx", device="cpu").info
    assert (info.arch, info.extra["tta"], info.extra["precision"]) == ("vgg_mid_wide", "flip", "int8")


def recipe_phases(name, typed, out):
    """A recipe's phases as ``fer-train train`` would run them, with ``typed`` options given beside it."""
    defaults = argparse.ArgumentParser()
    add_train_arguments(defaults)
    recipe = read_recipe(name, set(vars(defaults.parse_args([]))))
    return phase_arguments(defaults.parse_args([]), recipe, typed, out)


def test_options_typed_with_a_recipe_win_over_it_even_to_turn_a_flag_off(tmp_path):
    typed = typed_train_options(["train", "--no-amp", "--teacher", "runs/mine.onnx"])
    phases = recipe_phases("fer2013_vgg", typed, tmp_path)
    assert [(p.amp, p.teacher) for p in phases] == [(False, [Path("runs/mine.onnx")])] * 2
    untouched = recipe_phases("fer2013_vgg", {}, tmp_path)
    assert [(p.amp, p.teacher) for p in untouched] == [(True, [Path("fer2013_ensemble.onnx")])] * 2


def test_a_stopped_recipe_continues_with_resume(synthetic, tmp_path):
    run = tmp_path / "run"
    assert cli.main(recipe_args(synthetic, run, "fer2013_level", "--epochs", "2", "--stop-after", "1")) == 0
    assert epochs_in(run / "phase1") == [1] and not (run / "phase2").exists()
    assert cli.main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert epochs_in(run / "phase1") == [1, 2] and epochs_in(run / "phase2") == [1, 2]
    assert config(run / "phase2")["align"] == "eyes"
    assert EmotionClassifier(run / "fer2013_level.onnx", device="cpu").info.levels_eyes


def test_recipes_that_need_votes_say_so(synthetic, tmp_path, capsys):
    with pytest.raises(SystemExit, match="needs the FER\\+ votes"):
        cli.main(recipe_args(synthetic, tmp_path / "run", "ferplus"))
    assert cli.main(recipe_args(synthetic, tmp_path / "run", "fer2014")) == 1  # not one of the recipes
    assert "fer2013_light" in capsys.readouterr().err and not (tmp_path / "run").exists()
    assert cli.main(recipe_args(synthetic, tmp_path / "run", str(tmp_path / "mine.toml"))) == 1
    assert "mine.toml: no such recipe file" in capsys.readouterr().err


def own_recipe(folder):
    """fer2013's recipe copied with both phases shortened and the arch changed, as a user would."""
    text = (REPO / "training" / "recipes" / "fer2013.toml").read_text()
    changed = re.sub(r'arch = "fernet"', 'arch = "cnn"', text, count=1)
    changed = re.sub(r"(\[\[phase\]\][^\[]*?)epochs = \d+", r"\1epochs = 2", changed, count=1, flags=re.S)
    changed = changed.replace("epochs = 10", "epochs = 1")
    assert changed.count('arch = "cnn"') == 1 and "epochs = 2\n" in changed and "epochs = 1\n" in changed
    path = folder / "short.toml"
    path.write_text(changed)
    return path


def test_a_recipe_file_of_ones_own_runs_each_phase_as_written_and_resumes_as_it_started(synthetic, tmp_path):
    recipe, run = own_recipe(tmp_path), tmp_path / "run"
    args = ["train", "--recipe", str(recipe), "--data", str(synthetic["csv"]), "--out", str(run), "--batch-size",
            "8", "--no-progress", "--threads", "1", "--stop-after", "1"]
    assert cli.main(args) == 0
    assert epochs_in(run / "phase1") == [1] and config(run / "phase1")["arch"] == "cnn"
    kept = (run / "recipe.toml").read_text()
    assert kept == recipe.read_text()
    recipe.write_text(kept.replace("epochs = 2", "epochs = 5"))  # changed while the run was stopped
    assert cli.main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert epochs_in(run / "phase1") == [1, 2]  # as the run started, not as the file now says
    assert epochs_in(run / "phase2") == [1] and config(run / "phase2")["arch"] == "cnn"
    assert EmotionClassifier(run / "short.onnx", device="cpu").info.arch == "cnn"


def test_ctrl_c_in_a_recipe_says_how_to_resume(synthetic, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    interrupt_epoch(monkeypatch, 2)
    assert cli.main(recipe_args(synthetic, run, "fer2013", "--epochs", "2")) == 130
    assert capsys.readouterr().err.strip() == f"fer-train: stopped; continue with: fer-train train --resume {run}"


def card_commands(name):
    """The ``fer-train train`` lines of a shipped model's card, as parsed options, and the options its
    ``fer-train train --recipe NAME`` command types beside the recipe (a teacher of its own, say)."""
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    card = (REPO / "assets" / "models" / f"{name}.md").read_text()
    lines = re.findall(r"^fer-train train (--data .*)$", card, flags=re.M)
    recipe_line = re.search(rf"`fer-train train --recipe {name} ([^`]*)`", card)
    assert recipe_line, f"{name}.md does not give its recipe's command"
    typed = typed_train_options(["train", *shlex.split(recipe_line.group(1))])
    commands = [parser.parse_args(shlex.split(line)) for line in lines]
    return {k: v for k, v in typed.items() if k not in MACHINE}, commands


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_card_names_its_recipe_and_the_recipe_is_what_the_card_ran(name):
    assert set(SHIPPED) <= set(recipe_names())
    typed, commands = card_commands(name)
    phases = recipe_phases(name, typed, REPO / "runs")
    assert len(phases) == len(commands)
    fields = {f.name for f in dataclasses.fields(TrainConfig)} - MACHINE
    for phase, command in zip(phases, commands):
        assert {k: getattr(phase, k) for k in fields} == {k: getattr(command, k) for k in fields}
