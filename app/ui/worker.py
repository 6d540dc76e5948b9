"""The pipeline worker: a QObject that runs in its own QThread, reading frames and processing them.

The GUI talks to it through a thread-safe command queue and listens to its signals. Only the latest
result is kept (``take_latest``): a slow GUI skips frames instead of queueing them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)
CAMERA_RETRY_S = 1.0
# Live streams: the whole MTCNN cascade runs in a second thread, started every 5th frame at most, and
# O-Net (with a window search where it is unsure) follows the faces on every frame; see docs/benchmarks.md's speed table.
LIVE_DETECT_EVERY = 5


@dataclass(frozen=True)
class StreamSpec:
    """What to stream: a camera index, a video file, or (tests) a factory of frame iterables."""

    camera: int | None = None
    video: Path | None = None
    loop: bool = False
    factory: Callable[[], Iterable] | None = None

    @property
    def is_camera(self) -> bool:
        return self.camera is not None

    def describe(self) -> str:
        if self.camera is not None:
            return f"camera {self.camera}"
        return str(self.video) if self.video else "test source"


class PipelineWorker(QObject):
    loaded = Signal(str, str)  # detector device, classifier device
    load_failed = Signal(str)
    result_ready = Signal()  # a new latest result: call take_latest()
    file_done = Signal(object, object)  # (Path, FrameResult) for a still picture
    file_failed = Signal(object, str)  # (Path, one-line reason)
    status = Signal(str)  # a message for the status bar / overlay
    stream_ended = Signal()
    cameras_found = Signal(list)  # camera indices that open

    def __init__(self, model: Path | None, mode: str, pipeline_factory: Callable | None = None) -> None:
        super().__init__()
        self._model = model
        self._mode = mode
        self._factory = pipeline_factory
        self._commands: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._lock = threading.Lock()
        self._latest = None
        self._pending = False
        self._stream: StreamSpec | None = None
        self._iterator = None
        self._paused = False
        self._recorder = None
        self.pipeline = None

    # --- called from the GUI thread -------------------------------------------------------------
    def play(self, spec: StreamSpec) -> None:
        self._commands.put(("play", spec))

    def pause(self) -> None:
        self._commands.put(("pause", None))

    def open_files(self, paths: list[Path]) -> None:
        self._commands.put(("files", list(paths)))

    def set_mode(self, mode: str) -> None:
        self._commands.put(("mode", mode))

    def set_model(self, path: Path) -> None:
        self._commands.put(("model", path))

    def start_recording(self, path: Path) -> None:
        self._commands.put(("record", path))

    def stop_recording(self) -> None:
        self._commands.put(("record", None))

    def find_cameras(self, count: int = 5) -> None:
        self._commands.put(("cameras", count))

    def take_latest(self):
        """The newest stream result (or None); lets the worker announce the next one."""
        with self._lock:
            result, self._latest, self._pending = self._latest, None, False
        return result

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Ask the loop to end and wait for it; True when it ended in time."""
        self._stop.set()
        self._commands.put(("noop", None))
        return self._finished.wait(timeout_s)

    # --- the worker thread --------------------------------------------------------------------------
    def run(self) -> None:
        try:
            if self._load(self._model):
                self._loop()
        finally:
            self._close_stream()
            self._set_recording(None)
            if self.pipeline is not None:
                self.pipeline.close()  # waits for a background detection in flight, then ends its thread
            self._finished.set()

    def _load(self, model: Path | None) -> bool:
        from fer_emotion.app.core.classifier import ModelLoadError

        try:
            if self._factory is not None:
                self.pipeline = self._factory(model)
            else:
                from fer_emotion.app.core.factory import build_pipeline
                from fer_emotion.app.core.pipeline import PipelineConfig

                config = PipelineConfig(mode=self._mode, detect_every=LIVE_DETECT_EVERY, background_detection=True)
                self.pipeline = build_pipeline(model, config, classifier_threads=None)
        except ModelLoadError as err:
            self.load_failed.emit(str(err))
            return self.pipeline is not None
        self.loaded.emit(self.pipeline.detector.device.upper(), self.pipeline.classifier.device)
        return True

    def _loop(self) -> None:
        while not self._stop.is_set():
            streaming = self._iterator is not None and not self._paused
            try:
                command, argument = self._commands.get(timeout=0 if streaming else 0.1)
            except queue.Empty:
                command = None
            if command is not None:
                self._handle(command, argument)
                continue
            if streaming:
                self._step()
            elif self._stream is not None and self._stream.is_camera and not self._paused:
                self._reopen_camera()

    def _handle(self, command: str, argument) -> None:
        if command == "play":
            self._open_stream(argument)
        elif command == "pause":
            self._paused = True
        elif command == "files":
            self._paused = True
            self._process_files(argument)
        elif command == "mode":
            self._mode = argument
        elif command == "model":
            self._swap_model(argument)
        elif command == "record":
            self._set_recording(argument)
        elif command == "cameras":
            self.cameras_found.emit(self._probe_cameras(argument))

    def _open_stream(self, spec: StreamSpec) -> None:
        from fer_emotion.app.core.sources import SourceError, VideoSource

        self._close_stream()
        self._stream, self._paused = spec, False
        try:
            source = spec.factory() if spec.factory else VideoSource(spec.camera if spec.is_camera else spec.video, spec.loop)
            self._source = source
            self._iterator = iter(source)
            self._started = time.perf_counter()
            self.pipeline.reset()
            self.status.emit(f"Playing {spec.describe()}")
        except SourceError as err:
            self._iterator = None
            if spec.is_camera:
                self.status.emit(f"No camera found ({err}). Drop an image or a video, or use File > Open.")
                self._retry_at = time.monotonic() + CAMERA_RETRY_S
            else:
                self.status.emit(str(err))

    def _reopen_camera(self) -> None:
        if time.monotonic() >= getattr(self, "_retry_at", 0):
            self._open_stream(self._stream)

    def _close_stream(self) -> None:
        source = getattr(self, "_source", None)
        if source is not None and hasattr(source, "close"):
            source.close()
        self._source, self._iterator = None, None

    def _step(self) -> None:
        from fer_emotion.app.core.sources import SourceError

        try:
            frame = next(self._iterator, None)
        except (SourceError, OSError) as err:
            frame = None
            self.status.emit(f"Source failed: {err}")
        if frame is None:
            self._end_of_stream()
            return
        if not self._stream.is_camera:
            self._pace(frame.timestamp)
        result = self.pipeline.process(frame.image, frame.index, frame.timestamp, frame.decode_ms, mode=self._mode)
        if self._recorder is not None:
            self._recorder.write(result, frame.timestamp)
        with self._lock:
            self._latest = result
            announce, self._pending = not self._pending, True
        if announce:
            self.result_ready.emit()

    def _pace(self, timestamp: float) -> None:
        """Play files at their own speed, not as fast as the CPU allows."""
        wait = self._started + timestamp - time.perf_counter()
        if 0 < wait < 1.0:
            self._stop.wait(wait)

    def _end_of_stream(self) -> None:
        spec = self._stream
        self._close_stream()
        if spec is not None and spec.is_camera:
            self.status.emit("Camera lost; retrying…")
            self._retry_at = time.monotonic() + CAMERA_RETRY_S
        else:
            self.stream_ended.emit()

    def _process_files(self, paths: list[Path]) -> None:
        from fer_emotion.app.core.sources import SourceError, read_image

        for path in paths:
            if self._stop.is_set():
                return
            try:
                image = read_image(path)
            except SourceError as err:
                self.file_failed.emit(path, str(err))
                continue
            self.pipeline.reset()
            self.file_done.emit(path, self.pipeline.process(image, mode=self._mode))

    def _probe_cameras(self, count: int) -> list[int]:
        """Indices of the cameras that open; the one streaming now counts without being reopened."""
        import cv2

        found = []
        for index in range(count):
            if self._stream is not None and self._stream.camera == index and self._iterator is not None:
                found.append(index)
                continue
            capture = cv2.VideoCapture(index)
            if capture.isOpened():
                found.append(index)
            capture.release()
        return found

    def _swap_model(self, path: Path) -> None:
        from fer_emotion.app.core.classifier import ModelLoadError
        from fer_emotion.app.core.factory import live_classifier

        try:
            classifier = live_classifier(path)
        except ModelLoadError as err:
            self.load_failed.emit(str(err))
            return
        self.pipeline.classifier = classifier
        self.pipeline.reset()
        self.loaded.emit(self.pipeline.detector.device.upper(), classifier.device)

    def _set_recording(self, path: Path | None) -> None:
        from fer_emotion.app.core.outputs import Recorder
        from fer_emotion.app.core.sources import SourceError

        if self._recorder is not None:
            self._recorder.close()
            self.status.emit(f"Saved {self._recorder.video_path} and {self._recorder.csv_path}")
            self._recorder = None
        if path is None:
            return
        source = getattr(self, "_source", None)
        fps = getattr(source, "fps", 30.0) or 30.0
        size = getattr(source, "size", None) or (640, 480)
        try:
            self._recorder = Recorder(path, self.pipeline.labels, fps, size)
            self.status.emit(f"Recording to {path}")
        except SourceError as err:
            self.status.emit(str(err))
