import json

import pytest
from PIL import Image

from fer_emotion.training import cli
from fer_emotion.training.labels import FER2013


def test_knn_baseline_reports_accuracy(synthetic, capsys):
    assert cli.main(["knn", "--data", str(synthetic["csv"]), "--metric", "cosine", "--k", "1"]) == 0
    line = capsys.readouterr().out
    accuracy = float(line.split("val accuracy ")[1].split()[0])
    assert accuracy > 0.9  # the synthetic classes are bars at distinct heights: nearest neighbours get them


def test_knn_compares_both_metrics_in_one_call(synthetic, capsys):
    assert cli.main(["knn", "--data", str(synthetic["csv"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("metric=")[1].split(":")[0] for line in lines] == ["cosine", "euclidean"]


def test_sweep_trains_each_arch_and_writes_tables(synthetic, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--data", str(synthetic["csv"]), "--out", str(out), "--epochs", "1", "--batch-size", "8",
            "--no-progress", "--threads", "1", "--archs", "B16_N4_FC1_K3_AP20,fernet"]
    assert cli.main(args) == 0
    table = (out / "sweep.md").read_text().splitlines()
    assert len(table) == 4 and {row.split("|")[1].strip() for row in table[2:]} == {"B16_N4_FC1_K3_AP20", "fernet"}
    assert (out / "sweep.csv").read_text().startswith("arch,accuracy,precision,recall,f1,params,epoch_s")


def test_sweep_trains_every_combination_of_a_grid(synthetic, tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep", "--data", str(synthetic["csv"]), "--out", str(out), "--epochs", "1", "--no-progress",
            "--threads", "1", "--archs", "fernet", "--grid", "lr=0.01,0.05", "--grid", "optimizer=sgd,adamw",
            "--grid", "batch_size=8", "--grid", "weight_decay=1e-3"]
    assert cli.main(args) == 0
    table = (out / "sweep.md").read_text().splitlines()
    assert table[0].startswith("| arch | lr | optimizer | accuracy")
    combinations = {tuple(cell.strip() for cell in row.split("|")[1:4]) for row in table[2:]}
    assert combinations == {("fernet", lr, opt) for lr in ("0.01", "0.05") for opt in ("sgd", "adamw")}
    run = out / "arch=fernet,lr=0.01,optimizer=adamw"
    config = json.loads((run / "config.json").read_text())
    assert (config["lr"], config["optimizer"], config["batch_size"], config["weight_decay"]) == (0.01, "adamw", 8, 1e-3)
    with pytest.raises(SystemExit, match="write OPTION=V1,V2"):
        cli.main(args[:-8] + ["--grid", "learning_rate=0.1"])


def test_viz_writes_filters_and_feature_maps(synthetic, tmp_path, astronaut):
    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(synthetic["csv"]), "--out", str(run), "--epochs", "1", "--batch-size", "8",
                     "--no-progress", "--threads", "1"]) == 0
    Image.fromarray(astronaut[60:180, 170:280]).save(tmp_path / "face.png")
    assert cli.main(["viz", str(run), "--image", str(tmp_path / "face.png")]) == 0
    for name in ("filters.png", "feature_maps.png"):
        assert Image.open(run / name).size[0] > 300


def test_models_lists_the_registry_and_the_grid_with_parameter_counts(capsys):
    assert cli.main(["models"]) == 0
    rows = {line.split()[0]: line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]}
    assert {"fernet", "cnn", "resnet9", "resnet18", "vgg16_bn", "efficientnet_v2_s"} <= set(rows)
    assert sum(name.startswith("B") for name in rows) == 12
    assert rows["fernet"] == "588,599" and rows["fernet_deep3"] == "1,178,935"


def test_a_reader_that_stops_early_gets_no_traceback():
    import subprocess
    import sys

    listing = subprocess.run(f"{sys.executable} -m fer_emotion.training.cli models | head -1", shell=True,
                             capture_output=True, text=True, timeout=120)
    assert listing.stdout.startswith("architecture") and len(listing.stdout.splitlines()) == 1
    assert "Traceback" not in listing.stderr and "BrokenPipe" not in listing.stderr


def drawn_curves(metrics, out, val_name, monkeypatch):
    """plot_curves' lines as {(axis title, legend): (epochs, values)}."""
    import matplotlib.axes

    from fer_emotion.training.plots import plot_curves

    lines = []
    plot = matplotlib.axes.Axes.plot

    def spy(axis, *args, label=None, **kwargs):
        lines.append((axis, label, (list(args[0]), list(args[1]))))
        return plot(axis, *args, label=label, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    plot_curves(metrics, out, val_name)
    return {(axis.get_title(), label): points for axis, label, points in lines}  # titles are set after plotting


def test_curves_draw_every_validation_accuracy_column(tmp_path, monkeypatch):
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("epoch,train_loss,train_acc,val_loss,val_acc,val_majority_acc\n"
                       "1,1.5,0.40,1.6,0.38,0.41\n2,1.2,0.55,1.3,0.52,0.57\n")
    drawn = drawn_curves(metrics, tmp_path / "curves.png", "val (plurality)", monkeypatch)
    assert drawn[("Accuracy", "val (plurality)")] == ([1, 2], [0.38, 0.52])
    assert drawn[("Accuracy", "val (majority)")] == ([1, 2], [0.41, 0.57])
    assert Image.open(tmp_path / "curves.png").size[0] > 500


def test_a_column_new_after_a_resume_joins_the_metrics_and_is_drawn_where_it_has_values(tmp_path, monkeypatch):
    from fer_emotion.training.train import read_metrics, write_metrics_row

    metrics = tmp_path / "metrics.csv"
    base = {"train_loss": 1.5, "train_acc": 0.4, "val_loss": 1.6}
    write_metrics_row(metrics, {"epoch": 1, **base, "val_acc": 0.38})  # a run started by an older fer-train
    write_metrics_row(metrics, {"epoch": 2, **base, "val_acc": 0.52, "val_majority_acc": 0.57})  # resumed by this one
    write_metrics_row(metrics, {"epoch": 3, **base, "val_acc": 0.55, "val_majority_acc": 0.60})
    rows = read_metrics(metrics)
    assert [(r["epoch"], r["val_acc"], r["val_majority_acc"]) for r in rows] == [
        ("1", "0.38", ""), ("2", "0.52", "0.57"), ("3", "0.55", "0.6")]
    assert metrics.read_text().count("epoch") == 1
    drawn = drawn_curves(metrics, tmp_path / "curves.png", "val", monkeypatch)
    assert drawn[("Accuracy", "val")] == ([1, 2, 3], [0.38, 0.52, 0.55])
    assert drawn[("Accuracy", "val (majority)")] == ([2, 3], [0.57, 0.6])


def test_curves_mark_the_best_epoch_and_draw_the_learning_rate_on_whole_epochs(tmp_path, monkeypatch):
    metrics = tmp_path / "metrics.csv"
    metrics.write_text("epoch,lr,train_loss,train_acc,val_loss,val_acc\n1,0.05,1.5,0.40,1.6,0.38\n"
                       "2,0.02,1.2,0.55,1.3,0.52\n3,0.001,1.1,0.60,1.35,0.50\n")
    drawn = drawn_curves(metrics, tmp_path / "curves.png", "val", monkeypatch)
    assert drawn[("Accuracy", "best: epoch 2, 0.5200")] == ([2], [0.52])
    (rates,) = [points for (title, _), points in drawn.items() if title.startswith("Learning rate")]
    assert rates == ([1, 2, 3], [0.05, 0.02, 0.001])


def test_a_finished_run_reports_its_best_epoch_per_class(synthetic, tmp_path):
    import json

    from fer_emotion.training.train import read_metrics

    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(synthetic["csv"]), "--out", str(run), "--epochs", "3", "--batch-size", "8",
                     "--no-progress", "--threads", "1"]) == 0
    rows = read_metrics(run / "metrics.csv")
    best = max(rows, key=lambda r: float(r["val_acc"]))  # the first of equals, as best.pt keeps it
    report = json.loads((run / "report.json").read_text())
    assert report["epoch"] == int(best["epoch"]) and report["accuracy"] == pytest.approx(float(best["val_acc"]), abs=1e-5)
    assert set(report["per_class"]) == set(FER2013) and sum(map(sum, report["confusion_matrix"])) == report["count"]
    assert Image.open(run / "confusion.png").size[0] > 300


def test_train_help_groups_its_options_gives_examples_and_no_empty_defaults(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = capsys.readouterr().out
    for group in ("recipe", "data:", "model:", "optimisation:", "augmentation:", "run:", "research"):
        assert f"\n{group}" in text, group
    assert "examples:\n  fer-train train --recipe fer2013" in text
    flat = " ".join(text.split())  # help lines wrap anywhere
    assert not any(empty in flat for empty in ("(default: True)", "(default: False)", "(default: None)", "(default: [])"))
    assert "faces per step (per process under torchrun) (default: 128)" in flat  # a default that says something


def test_export_logs_what_it_wrote_not_each_graph_pass(synthetic, tmp_path, caplog):
    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(synthetic["csv"]), "--out", str(run), "--epochs", "1", "--batch-size", "8",
                     "--no-progress", "--threads", "1"]) == 0
    caplog.clear()
    with caplog.at_level("INFO"):
        assert cli.main(["export", str(run), "--out", str(tmp_path / "m.onnx"), "--int8"]) == 0
    chatty = [r.getMessage() for r in caplog.records if r.name.startswith(("onnxscript", "onnx_ir", "onnxruntime"))]
    assert chatty == [] and any("exported" in r.getMessage() for r in caplog.records)
