import json
import time

import pytest

from fer_emotion.app.cli import bench


def test_bench_json_reports_speed_and_recall(tiny_model, capsys):
    assert bench.main(["--frames", "12", "--json", "--check-recall", "--model", str(tiny_model)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames"] == 12 and report["fps"] > 0
    assert set(report["stages"]) >= {"decode", "detect", "crop", "classify", "track", "draw", "total"}
    assert all(v["p95_ms"] >= v["median_ms"] >= 0 for v in report["stages"].values())
    assert report["faces_per_frame"] == 1.0
    assert report["recall"] == 1.0 and report["reference_faces"] == 12
    assert report["peak_rss_mb"] > 0
    assert report["classifier_threads"] == 1  # a light model: one thread, as the app gives it


def test_bench_classifier_threads_can_be_given(tiny_model, capsys):
    assert bench.main(["--frames", "3", "--classifier-threads", "2", "--model", str(tiny_model)]) == 0
    assert "(2 threads)" in capsys.readouterr().out.splitlines()[0].split("classifier")[1]


def test_bench_table_and_bad_video(tiny_model, tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"nothing")
    assert bench.main([str(bad), "--model", str(tiny_model)]) == 1
    assert "bad.mp4" in capsys.readouterr().err


def test_reference_boxes_are_computed_once_per_video(tmp_path, monkeypatch):
    from fer_emotion.app.core import mtcnn
    from fer_emotion.app.core.detector import DetectorConfig

    video = bench.astronaut_clip(tmp_path / "clip.mp4", frames=6)
    cache = tmp_path / "cache"
    first = bench.reference_boxes(video, DetectorConfig(), 4, cache)
    assert len(first) == 4 and all(len(rows) == 1 and rows[0][4] > 0.99 for rows in first)
    assert len(list(cache.glob("*.json"))) == 1

    def no_detector(*args):
        raise AssertionError("the reference was computed again")

    monkeypatch.setattr(mtcnn, "facenet_reference", no_detector)
    assert bench.reference_boxes(video, DetectorConfig(), 4, cache) == first
    assert bench.reference_boxes(video, DetectorConfig(), 3, cache) == first[:3]
    with pytest.raises(AssertionError):  # more frames than kept: computed again
        bench.reference_boxes(video, DetectorConfig(), 5, cache)


def test_bench_realtime_paces_frames_and_reports_the_time_spent(tiny_model, capsys):
    started = time.perf_counter()
    assert bench.main(["--frames", "15", "--json", "--realtime", "--check-recall", "--model", str(tiny_model)]) == 0
    assert time.perf_counter() - started > 14 / 30  # the clip plays at 30 fps
    report = json.loads(capsys.readouterr().out)
    assert report["realtime"] and report["frames"] + report["frames_dropped"] == 15
    assert 0 < report["busy"] < 1
    assert report["recall"] == 1.0 and report["reference_faces"] == report["frames"]
