"""The main window: live view, side panel, toolbar, menus, drops, status bar."""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path

from PySide6.QtCore import QStandardPaths, Qt, QThread, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QComboBox, QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox, QToolBar,
)

from fer_emotion.app.core.shipped import default_model_path, shipped_models, title
from fer_emotion.app.core.sources import IMAGE_SUFFIXES, VIDEO_SUFFIXES, kind_of
from fer_emotion.app.ui.convert import to_qimage
from fer_emotion.app.ui.panel import FacePanel
from fer_emotion.app.ui.settings import Preferences
from fer_emotion.app.ui.view import VideoView
from fer_emotion.app.ui.worker import PipelineWorker, StreamSpec

log = logging.getLogger(__name__)
READABLE = sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES)
DROP_HINT = "Drop images ({}) or a video ({})".format(
    ", ".join(sorted(s.lstrip(".") for s in IMAGE_SUFFIXES)), ", ".join(sorted(s.lstrip(".") for s in VIDEO_SUFFIXES)))
MAX_CAMERAS = 5
MESSAGE_HOLD_S = 4.0  # a message keeps the status bar this long before the frame rate takes it back


def droppable_paths(mime) -> list[Path] | None:
    """The local files of a drag, when every one is a kind we can read; else None."""
    if not mime.hasUrls():
        return None
    paths = [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]
    if not paths or len(paths) != len(mime.urls()) or not all(p.is_file() and kind_of(p) for p in paths):
        return None
    return paths


class MainWindow(QMainWindow):
    files_dropped = Signal(list)

    def __init__(self, source: StreamSpec | None = None, model: Path | None = None, preferences: Preferences | None = None,
                 pipeline_factory=None) -> None:
        super().__init__()
        self.setWindowTitle("fer-emotion")
        self.setAcceptDrops(True)
        self.prefs = preferences or Preferences()
        self.view = VideoView()
        self.view.face_clicked.connect(self._select_face)
        self.setCentralWidget(self.view)
        self.panel = FacePanel()
        dock = QDockWidget("Selected face", self)
        dock.setObjectName("face-panel")
        dock.setWidget(self.panel)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.status_label = QLabel("Loading the face detector and the model…")
        self.statusBar().addWidget(self.status_label, 1)
        self.device_label = QLabel("")
        self.statusBar().addPermanentWidget(self.device_label)

        self.mode = self.prefs.mode
        self.selected: int | None = None
        self.current = None  # the result on screen
        self.files: list[tuple[Path, object]] = []  # dropped pictures and their results
        self.file_index = 0
        self.live_spec = source or StreamSpec(camera=self.prefs.camera)
        self._source_started = False
        self.recording = False
        self._arrivals: list[float] = []  # monotonic times of shown frames, for the fps figure
        self._message_until = 0.0  # monotonic time until which the status bar keeps its message
        remembered = self.prefs.model
        self.model_path = model or (remembered if remembered and remembered.is_file() else None)
        self._build_actions()
        if self.prefs.geometry is not None:
            self.restoreGeometry(self.prefs.geometry)
        else:
            self.resize(1100, 680)
        self.files_dropped.connect(self.open_paths)
        self._start_worker(pipeline_factory)

    # --- set-up -------------------------------------------------------------------------------------
    def _build_actions(self) -> None:
        """Every action, its shortcut, menu and toolbar place, in one place."""
        menu = self.menuBar()
        toolbar = QToolBar("Main", self)
        toolbar.setObjectName("main-toolbar")
        self.addToolBar(toolbar)

        def action(text: str, slot, shortcut=None, checkable=False) -> QAction:
            act = QAction(text, self)
            if shortcut:
                act.setShortcut(QKeySequence(shortcut))
            act.setCheckable(checkable)
            act.triggered.connect(slot)
            return act

        self.open_action = action("&Open…", self.choose_files, QKeySequence.StandardKey.Open)
        self.open_model_action = action("Open &model…", self.choose_model, "Ctrl+Shift+O")
        self.save_action = action("&Save annotated…", self.save_annotated, QKeySequence.StandardKey.Save)
        self.snapshot_action = action("Snapshot", self.snapshot, "Ctrl+T")
        self.record_action = action("Record", self.toggle_recording, "Ctrl+R", checkable=True)
        self.camera_action = action("Back to camera", self.back_to_camera, "Esc")
        self.previous_action = action("Previous picture", lambda: self.step_files(-1), "Left")
        self.next_action = action("Next picture", lambda: self.step_files(1), "Right")
        self.quit_action = action("&Quit", self.close, QKeySequence.StandardKey.Quit)
        self.emoji_action = action("Emoji", lambda: self.set_mode("emoji"), checkable=True)
        self.label_action = action("Label", lambda: self.set_mode("label"), checkable=True)
        self.toggle_mode_action = action("Switch overlay", self.toggle_mode, "M")
        self.about_action = action("About / model…", self.show_about, "F1")
        self.refresh_action = action("Refresh cameras", self.refresh_cameras, "F5")
        modes = QActionGroup(self)
        for act in (self.emoji_action, self.label_action):
            modes.addAction(act)
        (self.emoji_action if self.mode == "emoji" else self.label_action).setChecked(True)

        file_menu = menu.addMenu("&File")
        for act in (self.open_action, self.open_model_action, self.save_action, self.snapshot_action,
                    self.record_action, None, self.quit_action):
            file_menu.addSeparator() if act is None else file_menu.addAction(act)
        view_menu = menu.addMenu("&View")
        for act in (self.emoji_action, self.label_action, self.toggle_mode_action, None, self.previous_action,
                    self.next_action, self.camera_action, self.refresh_action):
            view_menu.addSeparator() if act is None else view_menu.addAction(act)
        self.model_menu = menu.addMenu("Mo&del")
        self.model_actions = QActionGroup(self)
        self.model_actions.setExclusionPolicy(QActionGroup.ExclusionPolicy.ExclusiveOptional)
        for path in shipped_models():
            act = action(title(path), lambda _checked=False, p=path: self.load_model(p), checkable=True)
            act.setData(str(path))
            self.model_actions.addAction(act)
            self.model_menu.addAction(act)
        self.model_menu.addSeparator()
        self.model_menu.addAction(self.open_model_action)
        self._check_model(self.model_path or default_model_path())
        menu.addMenu("&Help").addAction(self.about_action)

        self.camera_box = QComboBox()
        self.camera_box.setToolTip("Camera")
        self.camera_box.activated.connect(self._camera_chosen)
        for act in (self.open_action, self.save_action, self.snapshot_action, self.record_action):
            toolbar.addAction(act)
        toolbar.addSeparator()
        toolbar.addAction(self.emoji_action)
        toolbar.addAction(self.label_action)
        toolbar.addSeparator()
        toolbar.addWidget(self.camera_box)
        toolbar.addAction(self.refresh_action)
        toolbar.addAction(self.camera_action)
        self._fill_cameras([self.live_spec.camera] if self.live_spec.is_camera else [])

    def _start_worker(self, pipeline_factory) -> None:
        self.thread = QThread(self)
        self.worker = PipelineWorker(self.model_path, self.mode, pipeline_factory)
        self.worker.moveToThread(self.thread)
        self.thread.started.connect(self.worker.run)
        self.worker.loaded.connect(self._loaded)
        self.worker.load_failed.connect(self._load_failed)
        self.worker.result_ready.connect(self._show_latest)
        self.worker.file_done.connect(self._file_done)
        self.worker.file_failed.connect(self._file_failed)
        self.worker.status.connect(self._status)
        self.worker.cameras_found.connect(self._cameras_found)
        self.worker.stream_ended.connect(lambda: self._status("End of video. Drop files or go back to the camera."))
        self.view.show_message("Loading the face detector and the model…")
        self.thread.start()

    # --- worker signals -----------------------------------------------------------------------------
    def _loaded(self, detector_device: str, classifier_device: str) -> None:
        self.device_label.setText(f"detect: {detector_device} · classify: {classifier_device}")
        if self.worker.pipeline is not None:
            classifier = self.worker.pipeline.classifier
            self.setWindowTitle(f"fer-emotion — {classifier.path.name} ({len(classifier.info.labels)} classes)")
            self._follow_model_in_use()
            self.prefs.model = classifier.path  # remembered only once it has loaded
        if not self._source_started:
            # Only the first load starts the camera: a model swapped later keeps whatever is playing.
            self._source_started = True
            if not self.files:
                self.worker.play(self.live_spec)

    def _load_failed(self, message: str) -> None:
        self._status(message)
        if self.worker.pipeline is not None:  # the model in use stays; so does its tick in the menu
            self._follow_model_in_use()
        if self.worker.pipeline is None:
            self.view.clear(f"Cannot start: {message}")
            QMessageBox.critical(self, "Model refused", message)

    def _status(self, text: str) -> None:
        self.status_label.setText(text)
        self._message_until = time.monotonic() + MESSAGE_HOLD_S  # not overwritten by the next frame's fps
        if self.current is None:
            self.view.show_message(text)

    def _show_latest(self) -> None:
        result = self.worker.take_latest()
        if result is None or self.files:
            return
        self._display(result)
        self._update_status(result)

    def _display(self, result) -> None:
        self.current = result
        self.selected = self.panel.update_faces(result.faces, self.worker.pipeline.labels, self.selected)
        self.view.show_frame(to_qimage(result.image), result.faces, self.selected)

    def _update_status(self, result) -> None:
        now = time.monotonic()
        self._arrivals = [t for t in self._arrivals if now - t < 2.0] + [now]
        if now < self._message_until:
            return
        fps = (len(self._arrivals) - 1) / (self._arrivals[-1] - self._arrivals[0]) if len(self._arrivals) > 1 else 0.0
        stages = " · ".join(f"{k} {v:.1f}" for k, v in result.timings.items() if k != "decode")
        faces = len(result.faces)
        self.status_label.setText(f"{fps:.0f} fps · {faces} face{'s' * (faces != 1)} · ms: {stages}"
                                  + (" · ● recording" if self.recording else ""))

    def _file_done(self, path: Path, result) -> None:
        self.files.append((path, result))
        if len(self.files) == 1:
            self._show_file()
        else:
            self._file_status()

    def _file_failed(self, path: Path, message: str) -> None:
        self._status(message)
        QMessageBox.warning(self, "Cannot read file", message)

    def _show_file(self) -> None:
        path, result = self.files[self.file_index]
        self.panel.reset()
        self.selected = None
        self._display(result)
        self._file_status()

    def _file_status(self) -> None:
        path, result = self.files[self.file_index]
        faces = len(result.faces)
        self.status_label.setText(f"{path.name} ({self.file_index + 1}/{len(self.files)}): "
                                  f"{faces} face{'s' * (faces != 1)} · ←/→ to step · Esc for the camera")

    def _select_face(self, track_id: int) -> None:
        self.selected = track_id
        if self.current is not None:
            self._display(self.current)

    # --- user actions -------------------------------------------------------------------------------
    def open_paths(self, paths: list[Path]) -> None:
        """Show dropped or opened files: pictures are stepped through, a video plays."""
        paths = [Path(p) for p in paths]
        videos = [p for p in paths if kind_of(p) == "video"]
        self.prefs.last_folder = paths[0].parent
        self._source_started = True  # files opened before the first load: it must not start the camera behind them
        if videos:
            self.files = []
            self.current = None
            self.panel.reset()
            self.worker.play(StreamSpec(video=videos[0]))
            return
        self.files, self.file_index, self.current = [], 0, None
        self.worker.open_files(paths)
        self.view.clear(f"Annotating {len(paths)} file{'s' * (len(paths) != 1)}…")

    def choose_files(self) -> None:
        patterns = " ".join(f"*{s}" for s in READABLE)
        names, _ = QFileDialog.getOpenFileNames(self, "Open images or a video", str(self.prefs.last_folder),
                                                f"Images and videos ({patterns})")
        if names:
            self.open_paths([Path(n) for n in names])

    def choose_model(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Open a model", str(self.prefs.last_folder), "ONNX models (*.onnx)")
        if name:
            self.load_model(Path(name))

    def load_model(self, path: Path) -> None:
        self.model_path = path
        self._check_model(path)
        self.worker.set_model(path)

    def _follow_model_in_use(self) -> None:
        self.model_path = self.worker.pipeline.classifier.path
        self._check_model(self.model_path)

    def _check_model(self, path: Path) -> None:
        """Tick the Model menu's entry for ``path``; none for a model opened from elsewhere."""
        for act in self.model_actions.actions():
            act.setChecked(Path(act.data()) == Path(path))

    def step_files(self, step: int) -> None:
        if self.files:
            self.file_index = (self.file_index + step) % len(self.files)
            self._show_file()

    def back_to_camera(self) -> None:
        self.files, self.current = [], None
        self.panel.reset()
        self.view.clear(f"Starting {self.live_spec.describe()}…")
        self.worker.play(self.live_spec)

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self.prefs.mode = mode
        (self.emoji_action if mode == "emoji" else self.label_action).setChecked(True)
        self.worker.set_mode(mode)
        if self.files:  # pictures are redrawn at once
            self.worker.open_files([path for path, _ in self.files])
            self.files, self.current = [], None

    def toggle_mode(self) -> None:
        self.set_mode("label" if self.mode == "emoji" else "emoji")

    def save_annotated(self) -> None:
        if self.current is None:
            self._status("Nothing to save yet.")
            return
        stem = self.files[self.file_index][0].stem + "_annotated" if self.files else "frame"
        name, _ = QFileDialog.getSaveFileName(self, "Save annotated image", str(self.prefs.last_folder / f"{stem}.png"),
                                              "PNG (*.png);;JPEG (*.jpg)")
        if name:
            self.save_result(Path(name))

    def save_result(self, path: Path) -> tuple[Path, Path]:
        """The shown result as an image plus a JSON side-car like ``fer-annotate --json``."""
        from fer_emotion.app.core.outputs import image_document, save_image, write_json

        source = str(self.files[self.file_index][0]) if self.files else self.live_spec.describe()
        save_image(path, self.current.image)
        side_car = path.with_suffix(".json")
        write_json(side_car, image_document(source, path, self.current, self.worker.pipeline.classifier.path.name,
                                            self.worker.pipeline.labels))
        self._status(f"Saved {path} and {side_car.name}")
        return path, side_car

    def snapshot(self) -> None:
        if self.current is None:
            self._status("Nothing to snapshot yet.")
            return
        folder = Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.PicturesLocation) or Path.home())
        folder = folder / "fer-app"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
        self.save_result(folder / f"snapshot-{stamp}.png")

    def toggle_recording(self) -> None:
        if self.recording:
            self.worker.stop_recording()
            self.recording = False
        else:
            folder = Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.MoviesLocation) or Path.home())
            folder = folder / "fer-app"
            folder.mkdir(parents=True, exist_ok=True)
            stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
            self.worker.start_recording(folder / f"recording-{stamp}.mp4")
            self.recording = True
        self.record_action.setChecked(self.recording)

    def refresh_cameras(self) -> None:
        """Ask the worker to probe the cameras (off the GUI thread); the list fills when it answers."""
        self._status("Looking for cameras…")
        self.worker.find_cameras(MAX_CAMERAS)

    def _cameras_found(self, found: list) -> None:
        self._fill_cameras(found)
        self._status(f"{len(found)} camera{'s' * (len(found) != 1)} found" if found else "No camera found.")

    def _fill_cameras(self, indices: list[int]) -> None:
        self.camera_box.clear()
        for index in indices:
            self.camera_box.addItem(f"Camera {index}", index)
        if not indices:
            self.camera_box.addItem("No camera", None)

    def _camera_chosen(self, row: int) -> None:
        index = self.camera_box.itemData(row)
        if index is not None:
            self.prefs.camera = index
            self.live_spec = StreamSpec(camera=index)
            self.back_to_camera()

    def show_about(self) -> None:
        from fer_emotion.app import __version__

        pipeline = self.worker.pipeline
        if pipeline is None:
            QMessageBox.information(self, "About fer-emotion", f"fer-emotion {__version__}\nStill loading the model.")
            return
        info = pipeline.classifier.info
        metrics = ", ".join(f"{k} {v}" for k, v in info.metrics.items())
        text = (f"fer-emotion {__version__}\n\nModel: {pipeline.classifier.path}\nClasses: {', '.join(info.labels)}\n"
                f"Architecture: {info.arch}\nData: {info.dataset}\nCreated: {info.created}\nValidation: {metrics}\n\n"
                f"Face detection: MTCNN on {pipeline.detector.device.upper()}\n"
                f"Classification: ONNX Runtime on {classifier_summary(pipeline.classifier)}")
        QMessageBox.information(self, "About fer-emotion", text)

    # --- drag and drop ------------------------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if droppable_paths(event.mimeData()) is not None:
            event.acceptProposedAction()
            self.status_label.setText("Drop to annotate")
        else:
            event.ignore()
            self.status_label.setText(f"Cannot open that. {DROP_HINT}.")

    def dropEvent(self, event) -> None:  # noqa: N802
        paths = droppable_paths(event.mimeData())
        if paths is None:
            event.ignore()
            return
        event.acceptProposedAction()
        self.files_dropped.emit(paths)

    # --- closing ------------------------------------------------------------------------------------
    def closeEvent(self, event) -> None:  # noqa: N802
        self.prefs.geometry = self.saveGeometry()
        self.prefs.sync()
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self, timeout_s: float = 5.0) -> bool:
        """Stop the worker (no terminate()): the camera is released when its loop ends."""
        stopped = self.worker.stop(timeout_s)
        self.thread.quit()
        self.thread.wait(int(timeout_s * 1000))
        return stopped


def scripted_exit(window: MainWindow, seconds: float, screenshot: Path | None) -> None:
    """For demos and tests: after ``seconds``, save a screenshot of the window and quit with 0."""
    from PySide6.QtWidgets import QApplication

    def finish() -> None:
        if screenshot is not None:
            window.grab().save(str(screenshot))
        window.close()
        QApplication.instance().exit(0)

    QTimer.singleShot(int(seconds * 1000), finish)


def classifier_summary(classifier) -> str:
    """Where and how the classifier runs, for the About box: "CPU, int8 (signed weights), 2 threads"."""
    from fer_emotion.app.core.classifier import threads_text

    if classifier.device != "CPU":
        return classifier.device
    return f"CPU, {classifier.kernels}, {threads_text(classifier.threads)}"
