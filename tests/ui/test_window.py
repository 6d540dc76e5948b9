import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from fer_emotion.app.ui.convert import to_array, to_qimage
from fer_emotion.app.ui.settings import Preferences
from fer_emotion.app.ui.worker import StreamSpec
from tests.conftest import ASTRONAUT_FACE
from tests.ui.conftest import moving_frames

REPO = Path(__file__).resolve().parents[2]


def fake_spec(astronaut, **kwargs):
    return StreamSpec(factory=moving_frames(astronaut, **kwargs))


def first_result(qtbot, window, timeout=30000):
    with qtbot.waitSignal(window.worker.result_ready, timeout=timeout):
        pass
    qtbot.waitUntil(lambda: window.current is not None, timeout=timeout)
    return window.current


def test_window_opens_streams_and_closes_cleanly(qtbot, make_window, astronaut):
    window = make_window(fake_spec(astronaut))
    window.show()
    result = first_result(qtbot, window)
    assert len(result.faces) == 1
    assert window.panel.title.text().startswith("Face 1:")
    assert window.status_label.text() == "Playing test source"  # held a few seconds, then the frame rate
    qtbot.waitUntil(lambda: "fps" in window.status_label.text(), timeout=10000)
    assert window.shutdown(timeout_s=5.0)
    assert window.thread.isFinished()


def test_switching_modes_changes_the_drawing(qtbot, make_window, astronaut):
    window = make_window(fake_spec(astronaut))
    window.set_mode("emoji")
    emoji = first_result(qtbot, window).image
    window.toggle_mode()
    assert window.mode == "label" and window.label_action.isChecked() and not window.emoji_action.isChecked()
    assert Preferences().mode == "label"  # remembered for the next run
    x1, y1, x2, y2 = (int(v) for v in ASTRONAUT_FACE)

    def face_visible():  # label mode leaves the middle of the face as it is; emoji covers it
        image = window.current.image
        return np.abs(image[y1 + 30:y2 - 30, x1 + 25:x2 - 25].astype(int)
                      - astronaut[y1 + 30:y2 - 30, x1 + 25:x2 - 25].astype(int)).mean() < 20

    qtbot.waitUntil(face_visible, timeout=10000)
    assert np.abs(emoji[y1 + 30:y2 - 30, x1 + 25:x2 - 25].astype(int)
                  - astronaut[y1 + 30:y2 - 30, x1 + 25:x2 - 25].astype(int)).mean() > 40


def drag_events(paths):
    mime = QMimeData()  # kept in a local variable: Qt does not own it
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    enter = QDragEnterEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                            Qt.KeyboardModifier.NoModifier)
    drop = QDropEvent(QPoint(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton,
                      Qt.KeyboardModifier.NoModifier)
    return mime, enter, drop


def test_dropping_images_annotates_them(qtbot, make_window, astronaut, grace_hopper, tmp_path):
    window = make_window(fake_spec(astronaut))
    first_result(qtbot, window)
    Image.fromarray(astronaut).save(tmp_path / "astronaut.png")
    Image.fromarray(grace_hopper).save(tmp_path / "hopper.jpg")
    mime, enter, drop = drag_events([tmp_path / "astronaut.png", tmp_path / "hopper.jpg"])
    window.dragEnterEvent(enter)
    assert enter.isAccepted()
    with qtbot.waitSignal(window.files_dropped, timeout=5000) as dropped:
        window.dropEvent(drop)
    assert [p.name for p in dropped.args[0]] == ["astronaut.png", "hopper.jpg"]
    qtbot.waitUntil(lambda: len(window.files) == 2, timeout=30000)
    assert window.files[0][0].name == "astronaut.png" and len(window.current.faces) == 1
    window.step_files(1)
    assert "hopper.jpg (2/2)" in window.status_label.text()
    saved, side_car = window.save_result(tmp_path / "saved.png")
    assert saved.exists() and '"faces"' in side_car.read_text()
    window.back_to_camera()
    first_result(qtbot, window)
    assert window.files == []


def test_files_opened_before_the_model_loads_keep_the_camera_off(qtbot, make_window, astronaut, tmp_path):
    opened = []

    def camera():  # the live source, counted when it is opened
        opened.append(True)
        return moving_frames(astronaut)()

    Image.fromarray(astronaut).save(tmp_path / "astronaut.png")
    window = make_window(StreamSpec(factory=camera))
    window.open_paths([tmp_path / "astronaut.png"])  # as `fer-app --source photo.jpg` does, before the first load
    qtbot.waitUntil(lambda: len(window.files) == 1, timeout=30000)
    qtbot.wait(500)  # the first load's signal has come and gone
    assert window.worker.pipeline is not None and window._source_started
    assert opened == [] and "astronaut.png (1/1)" in window.status_label.text()
    window.back_to_camera()
    first_result(qtbot, window)
    assert opened == [True]


def test_a_drag_we_cannot_read_is_refused_with_a_hint(qtbot, make_window, astronaut, tmp_path):
    window = make_window(fake_spec(astronaut))
    (tmp_path / "notes.txt").write_text("hello")
    mime, enter, _ = drag_events([tmp_path / "notes.txt"])
    window.dragEnterEvent(enter)
    assert not enter.isAccepted()
    assert "Cannot open that" in window.status_label.text() and "jpg" in window.status_label.text()


def test_broken_file_gives_a_message_not_a_crash(qtbot, make_window, astronaut, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    shown = []
    monkeypatch.setattr(QMessageBox, "warning", lambda *args: shown.append(args[2]))
    window = make_window(fake_spec(astronaut))
    first_result(qtbot, window)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    with qtbot.waitSignal(window.worker.file_failed, timeout=10000):
        window.open_paths([tmp_path / "broken.jpg"])
    qtbot.waitUntil(lambda: bool(shown), timeout=5000)
    assert "broken.jpg" in shown[0]


def test_source_failing_mid_stream_gives_a_message(qtbot, make_window, astronaut):
    window = make_window(fake_spec(astronaut, fail_after=3))
    with qtbot.waitSignal(window.worker.status, timeout=30000,
                          check_params_cb=lambda text: "Source failed" in text) as blocker:
        pass
    assert "device unplugged" in blocker.args[0]
    assert window.worker.pipeline is not None


def test_missing_camera_says_so(qtbot, make_window):
    window = make_window(StreamSpec(camera=9))
    with qtbot.waitSignal(window.worker.status, timeout=30000, check_params_cb=lambda t: "No camera" in t):
        pass
    qtbot.waitUntil(lambda: "drop" in window.view.message.lower(), timeout=5000)


def test_recording_writes_video_and_csv(qtbot, make_window, astronaut, tmp_path):
    window = make_window(fake_spec(astronaut))
    first_result(qtbot, window)
    window.worker.start_recording(tmp_path / "rec.mp4")
    for _ in range(3):
        first_result(qtbot, window)
        window.current = None
    window.worker.stop_recording()
    qtbot.waitUntil(lambda: (tmp_path / "rec.csv").exists() and len((tmp_path / "rec.csv").read_text().splitlines()) > 2,
                    timeout=10000)
    header = (tmp_path / "rec.csv").read_text().splitlines()[0]
    assert header.startswith("frame,time,track_id,label,score,angry")


def test_settings_round_trip(tmp_path):
    from PySide6.QtCore import QSettings

    store = QSettings(str(tmp_path / "prefs.ini"), QSettings.Format.IniFormat)
    prefs = Preferences(store)
    prefs.mode, prefs.camera, prefs.model, prefs.last_folder = "label", 2, tmp_path / "m.onnx", tmp_path
    prefs.sync()
    again = Preferences(QSettings(str(tmp_path / "prefs.ini"), QSettings.Format.IniFormat))
    assert (again.mode, again.camera, again.model, again.last_folder) == ("label", 2, tmp_path / "m.onnx", tmp_path)


def test_qimage_round_trip(astronaut):
    np.testing.assert_array_equal(to_array(to_qimage(astronaut)), astronaut)


@pytest.mark.xvfb
def test_real_window_screenshot_shows_the_overlay_on_the_face(tmp_path, astronaut):
    import cv2

    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb is not installed (Debian package xvfb)")
    video = tmp_path / "astronaut.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (512, 512))
    for _ in range(60):
        writer.write(astronaut[:, :, ::-1].copy())
    writer.release()
    display = ":97"
    server = subprocess.Popen([xvfb, display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        env = {**os.environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb",
               "XDG_CONFIG_HOME": str(tmp_path / "config"), "HOME": str(tmp_path)}
        shot = tmp_path / "shot.png"
        done = subprocess.run([sys.executable, "-m", "fer_emotion.app.ui.main", "--source", str(video), "--loop", "--mode", "emoji",
                               "--exit-after", "25", "--screenshot", str(shot), "--report-startup"], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=120)
    finally:
        server.terminate()
        server.wait()
    assert done.returncode == 0, done.stderr[-2000:]
    times = dict(re.findall(r"^(window visible|first annotated frame) after ([\d.]+) s$", done.stdout, re.M))
    assert 0 < float(times["window visible"]) < float(times["first annotated frame"]) < 25
    image = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    # Where the video lies in the window: the view's background is (24, 24, 28) around it.
    background = np.all(np.abs(image - (24, 24, 28)) <= 3, axis=2)
    view_rows = np.nonzero(background.sum(1) > 20)[0]
    rows = np.arange(view_rows.min(), view_rows.max() + 1)
    margin_cols = np.nonzero(background[rows].mean(0) > 0.5)[0]  # the window is wider than the video
    inside = np.arange(margin_cols.min(), margin_cols.max() + 1)
    picture_cols = inside[background[rows][:, inside].mean(0) < 0.05]
    left, right = picture_cols.min(), picture_cols.max()
    top = rows.min() + np.argmax(~background[rows, (left + right) // 2])
    scale = (right - left + 1) / 512
    x1, y1, x2, y2 = ASTRONAUT_FACE
    face_centre = np.array([left + (x1 + x2) / 2 * scale, top + (y1 + y2) / 2 * scale])
    # The emoji's yellow must sit on the face.
    yellow = (image[:, :, 0] > 200) & (image[:, :, 1] > 150) & (image[:, :, 2] < 90)
    ys, xs = np.nonzero(yellow)
    assert yellow.sum() > 0.3 * ((x2 - x1) * scale) ** 2
    np.testing.assert_allclose([xs.mean(), ys.mean()], face_centre, atol=0.15 * (x2 - x1) * scale)


def test_version_reports_the_devices(capsys):
    from fer_emotion.app.ui.main import main

    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("fer-app 0.1.0") and "face detection and classification on CPU" in out


def test_missing_source_file_is_refused(capsys, tmp_path):
    from fer_emotion.app.ui.main import main

    assert main(["--source", str(tmp_path / "none.mp4")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_missing_model_file_is_refused(capsys, tmp_path):
    from fer_emotion.app.ui.main import main

    assert main(["--model", str(tmp_path / "none.onnx")]) == 2
    assert "none.onnx: no such model file (shipped models" in capsys.readouterr().err


def test_no_display_is_said_in_one_line(capsys, monkeypatch):
    from fer_emotion.app.ui import main as app_main

    monkeypatch.setattr(app_main.sys, "platform", "linux")
    for name in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY"):
        monkeypatch.delenv(name, raising=False)
    assert app_main.main([]) == 2
    assert "no display" in capsys.readouterr().err
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert app_main.no_display() is None
    monkeypatch.delenv("WAYLAND_DISPLAY")
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    assert app_main.no_display() is None
    monkeypatch.setattr(app_main.sys, "platform", "darwin")
    monkeypatch.delenv("QT_QPA_PLATFORM")
    assert app_main.no_display() is None


def test_camera_refresh_runs_in_the_worker(qtbot, make_window, astronaut):
    window = make_window(fake_spec(astronaut))
    first_result(qtbot, window)
    with qtbot.waitSignal(window.worker.cameras_found, timeout=20000) as found:
        window.refresh_cameras()
    assert found.args[0] == []  # no camera on a test machine
    assert window.camera_box.count() == 1 and window.camera_box.itemText(0) == "No camera"


def test_model_menu_lists_the_shipped_models_and_ticks_the_one_in_use(qtbot, make_window, astronaut, tmp_path):
    from fer_emotion.app.core.shipped import default_model_path, shipped_models

    window = make_window(fake_spec(astronaut))
    first_result(qtbot, window)
    entries = {Path(act.data()): act for act in window.model_actions.actions()}
    assert set(entries) == set(shipped_models()) and default_model_path() in entries
    assert not any(act.isChecked() for act in entries.values())  # the test's tiny model is in use
    statuses = []
    window.worker.status.connect(statuses.append)
    with qtbot.waitSignal(window.worker.loaded, timeout=30000):
        entries[default_model_path()].trigger()
    assert window.worker.pipeline.classifier.path == default_model_path()
    first_result(qtbot, window)
    assert not any(text.startswith("Playing") for text in statuses)  # the swap did not restart the source
    assert entries[default_model_path()].isChecked()
    assert Preferences().model == default_model_path()
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with qtbot.waitSignal(window.worker.load_failed, timeout=30000):
        window.load_model(broken)
    shown = window.current
    qtbot.waitUntil(lambda: window.current is not shown, timeout=10000)  # frames go on under the same model
    assert "broken.onnx" in window.status_label.text()  # and do not wipe the error from the status bar
    assert entries[default_model_path()].isChecked()  # the model in use did not change
    assert Preferences().model == default_model_path()


def test_about_says_how_the_model_runs(qtbot, make_window, astronaut, monkeypatch):
    from PySide6.QtWidgets import QMessageBox

    shown = []
    monkeypatch.setattr(QMessageBox, "information", lambda *args: shown.append(args[2]))
    window = make_window(fake_spec(astronaut))
    first_result(qtbot, window)
    window.show_about()
    assert "tiny.onnx" in shown[-1] and "Architecture: linear" in shown[-1]
    assert shown[-1].endswith("Classification: ONNX Runtime on CPU, float, onnxruntime's threads")
    from fer_emotion.app.core.classifier import EmotionClassifier
    from fer_emotion.app.ui.window import classifier_summary

    one = EmotionClassifier(window.worker.pipeline.classifier.path, device="cpu", threads=1)
    assert classifier_summary(one) == "CPU, float, 1 thread"
    one.set_threads(2)
    assert classifier_summary(one) == "CPU, float, 2 threads"
