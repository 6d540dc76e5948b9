import os

import cv2
import numpy as np
import pytest

from fer_emotion.app.core.pipeline import STAGES, Pipeline, PipelineConfig
from tests.conftest import ASTRONAUT_FACE, LABELS


@pytest.mark.parametrize("mode", ["emoji", "label"])
def test_astronaut_end_to_end(pipeline, astronaut, mode):
    result = pipeline.process(astronaut, mode=mode)
    assert len(result.faces) == 1
    face = result.faces[0]
    np.testing.assert_allclose(face.box, ASTRONAUT_FACE, atol=4.0)
    assert face.label in LABELS and face.score == pytest.approx(face.probs[face.label])
    assert sum(face.probs.values()) == pytest.approx(1.0, rel=1e-4)
    assert set(result.timings) == set(STAGES) and all(v >= 0 for v in result.timings.values())
    changed = np.any(result.image != astronaut, axis=2)
    x1, y1, x2, y2 = (int(v) for v in face.box)
    assert changed[y1:y2, x1:x2].mean() > (0.8 if mode == "emoji" else 0.0)
    assert not changed[300:, 300:].any()


def test_emoji_and_label_modes_draw_differently(pipeline, grace_hopper):
    emoji = pipeline.process(grace_hopper, mode="emoji").image
    label = pipeline.process(grace_hopper, mode="label").image
    assert np.any(emoji != label)


def test_no_face_gives_no_faces_and_a_marked_copy(pipeline):
    blank = np.full((240, 320, 3), 90, np.uint8)
    result = pipeline.process(blank)
    assert result.faces == () and np.any(result.image != blank)


def test_whole_image_mode_classifies_a_faceless_picture(detector, classifier):
    pipeline = Pipeline(detector, classifier, PipelineConfig(whole_image=True))
    crop = np.full((48, 48, 3), 120, np.uint8)
    (face,) = pipeline.process(crop).faces
    assert face.whole_image and face.box == (0.0, 0.0, 48.0, 48.0)


def test_tracking_between_detections_follows_a_moving_face(detector, classifier, astronaut):
    pipeline = Pipeline(detector, classifier, PipelineConfig(detect_every=4))
    results = []
    for step in range(6):
        frame = np.roll(astronaut, 3 * step, axis=1)  # the face moves 3 px right each frame
        results.append(pipeline.process(frame, index=step))
    assert [r.full_detection for r in results] == [True, False, False, False, True, False]
    assert len({r.faces[0].track_id for r in results}) == 1
    last_x = results[-1].faces[0].box[0]
    assert last_x == pytest.approx(ASTRONAUT_FACE[0] + 15, abs=6)


def test_a_face_hidden_for_a_frame_comes_back_before_the_next_full_detection(detector, classifier, astronaut):
    pipeline = Pipeline(detector, classifier, PipelineConfig(detect_every=10))
    two = np.ascontiguousarray(np.concatenate([astronaut, astronaut], axis=1))  # two faces, 512 px apart
    hidden = two.copy()
    x1, y1, x2, y2 = (int(v) for v in ASTRONAUT_FACE)
    hidden[y1:y2, x1:x2] = 120  # the left face covered for one frame
    results = [pipeline.process(frame, index=i) for i, frame in enumerate([two, hidden, two, two])]
    assert [r.full_detection for r in results] == [True, False, False, False]
    assert [len(r.faces) for r in results] == [2, 1, 2, 2]
    left = [min(r.faces, key=lambda face: face.box[0]) for r in (results[0], results[2])]
    assert left[0].track_id == left[1].track_id and left[1].box[0] < 256


def test_a_stream_whose_faces_are_all_lost_looks_again_at_once(detector, classifier, astronaut):
    pipeline = Pipeline(detector, classifier, PipelineConfig(detect_every=10))
    hidden = astronaut.copy()
    x1, y1, x2, y2 = (int(v) for v in ASTRONAUT_FACE)
    hidden[y1:y2, x1:x2] = 120
    results = [pipeline.process(frame, index=i) for i, frame in enumerate([astronaut, hidden, astronaut])]
    assert [r.full_detection for r in results] == [True, False, True]
    assert results[2].faces[0].track_id == results[0].faces[0].track_id


def test_face_cut_by_the_frame_edge_is_classified(pipeline, astronaut):
    cut = np.ascontiguousarray(astronaut[110:, 220:])  # the top-left of the face is outside the frame
    result = pipeline.process(cut)
    for face in result.faces:
        x1, y1, x2, y2 = face.box
        assert 0 <= x1 < x2 <= cut.shape[1] and 0 <= y1 < y2 <= cut.shape[0]
        assert sum(face.probs.values()) == pytest.approx(1.0, rel=1e-4)


def test_tiny_faces_are_handled(pipeline, astronaut):
    import cv2

    small = cv2.resize(astronaut, (150, 150), interpolation=cv2.INTER_AREA)  # the face is about 25 px
    result = pipeline.process(small)
    assert len(result.faces) <= 1
    assert result.image.shape == small.shape


def test_background_detection_keeps_the_face(detector, classifier, astronaut):
    pipeline = Pipeline(detector, classifier, PipelineConfig(background_detection=True))
    try:
        results = [pipeline.process(np.roll(astronaut, 2 * step, axis=1), index=step) for step in range(8)]
    finally:
        pipeline.close()
    assert results[0].full_detection  # the first frame is detected at once
    assert all(len(r.faces) == 1 for r in results)
    assert len({r.faces[0].track_id for r in results}) == 1


def test_background_detection_starts_at_most_every_k_frames(astronaut):
    import threading
    import time

    from fer_emotion.app.core.pipeline import BackgroundDetection

    class CountingDetector:
        def __init__(self):
            self.calls, self.lock = 0, threading.Lock()

        def detect(self, image):
            with self.lock:
                self.calls += 1
            return []

        def refine(self, image, boxes):
            return [None for _ in boxes]

    counting = CountingDetector()
    background = BackgroundDetection(counting, every=4)
    try:
        for _ in range(13):
            background.find(astronaut, [])
            time.sleep(0.02)  # each detection finishes long before the next frame
    finally:
        background.close()
    assert counting.calls == 4  # frame 1 in the caller's thread, then frames 5, 9 and 13


def test_a_late_detection_is_followed_to_the_current_frame(detector, astronaut):
    from fer_emotion.app.core.detector import Detection
    from fer_emotion.app.core.pipeline import BackgroundDetection
    from fer_emotion.app.core.tracker import iou

    # the face walks 30 px a frame; the detection describes the first frame and arrives five frames later
    frames = [np.roll(astronaut, 30 * step, axis=1) for step in range(6)]
    background = BackgroundDetection(detector, stride=1)
    try:
        background._frames = frames[1:]
        (caught,) = background._catch_up([Detection(ASTRONAUT_FACE, 0.99)])
    finally:
        background.close()
    x1, y1, x2, y2 = ASTRONAUT_FACE
    now = (x1 + 150, y1, x2 + 150, y2)
    assert iou(ASTRONAUT_FACE, now) == 0  # the detected box alone no longer touches the face
    assert iou(caught, now) > 0.7
    assert background._frames == []


def test_detection_runs_on_two_threads_that_sleep_between_calls(tiny_model):
    from fer_emotion.app.core.detector import DetectorConfig
    from fer_emotion.app.core.factory import build_pipeline, detector_threads

    live, inline = PipelineConfig(background_detection=True), PipelineConfig()
    assert detector_threads(live, cores=2) == 2 and detector_threads(inline, cores=16) == 2
    assert detector_threads(inline, cores=1) == 1 and detector_threads(inline, "torch", cores=2) == 1
    built = build_pipeline(tiny_model, live, device="cpu")
    assert built.detector.config.threads == min(2, os.cpu_count())
    built.close()
    built = build_pipeline(tiny_model, inline, DetectorConfig(threads=3), device="cpu")
    assert built.detector.config.threads == 3  # an explicit count is kept
    session = built.detector._nets._sessions["pnet"]
    assert session.get_session_options().intra_op_num_threads == 3
    # pool threads sleep between calls instead of spinning on cores the frame loop needs
    assert session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning") == "0"
    built.close()


def test_a_model_trained_on_level_eyes_gets_its_faces_turned_upright(detector, tmp_path, astronaut):
    from fer_emotion.app.core.classifier import EmotionClassifier
    from fer_emotion.app.core.crop import crop_faces
    from tests.conftest import tiny_model_info, write_linear_onnx

    info = tiny_model_info(extra={"align": "eyes"})
    aligned = EmotionClassifier(write_linear_onnx(tmp_path / "aligned.onnx", info.to_props()), device="cpu")
    x1, y1, x2, y2 = ASTRONAUT_FACE
    frame = cv2.warpAffine(astronaut, cv2.getRotationMatrix2D(((x1 + x2) / 2, (y1 + y2) / 2), 30, 1.0),
                           astronaut.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
    (detection,) = detector.detect(frame)
    assert detection.roll < -20
    (face,) = Pipeline(detector, aligned).process(frame).faces
    turned = aligned(crop_faces(frame, [detection.box], 48, 0.15, [detection.roll]))[0]
    plain = aligned(crop_faces(frame, [detection.box], 48, 0.15))[0]
    probs = np.array([face.probs[label] for label in LABELS])
    np.testing.assert_allclose(probs, turned, atol=1e-5)
    assert np.abs(probs - plain).max() > 1e-3


def test_the_live_view_gives_a_heavy_classifier_a_second_thread(tiny_model, monkeypatch):
    from fer_emotion.app.core import factory
    from fer_emotion.app.core.classifier import EmotionClassifier

    assert factory.live_threads(11.0, cores=2) == 2 and factory.live_threads(11.0, cores=8) == 2
    assert factory.live_threads(0.4, cores=2) == 1 and factory.live_threads(11.0, cores=1) == 1
    monkeypatch.setattr(factory.os, "cpu_count", lambda: 2)
    for face_ms, threads in ((11.0, 2), (0.4, 1)):
        monkeypatch.setattr(EmotionClassifier, "face_ms", lambda self, ms=face_ms: ms)
        built = factory.build_pipeline(tiny_model, PipelineConfig(background_detection=True), device="cpu",
                                       classifier_threads=None)
        assert built.classifier.threads == threads
        assert built.classifier._session.get_session_options().intra_op_num_threads == threads
        built.close()
    built = factory.build_pipeline(tiny_model, PipelineConfig(), device="cpu")  # files: onnxruntime's choice
    assert built.classifier._session.get_session_options().intra_op_num_threads == 0
    built.close()
