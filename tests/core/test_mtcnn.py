"""The numpy MTCNN cascade and its ONNX networks, checked against facenet-pytorch's own MTCNN."""

import subprocess
import sys

import numpy as np
import pytest

import cv2

from fer_emotion.app.core.mtcnn import (OnnxNets, TorchNets, detect_faces, facenet_reference, nms, pyramid, pyramid_scales,
                            to_squares)
from fer_emotion.app.core.tracker import iou


@pytest.fixture(scope="module")
def onnx_nets():
    return OnnxNets(device="cpu", threads=1)


@pytest.fixture(scope="module")
def torch_nets():
    return TorchNets(device="cpu", threads=1)


@pytest.fixture(scope="module")
def reference():
    return facenet_reference(20, (0.6, 0.7, 0.7), 0.709)


def test_shipped_onnx_networks_compute_what_facenet_pytorch_computes(onnx_nets, torch_nets):
    rng = np.random.default_rng(0)
    for name, side in (("pnet", 37), ("rnet", 24), ("onet", 48)):
        batch = rng.uniform(-1, 1, (3, 3, side, side + (5 if name == "pnet" else 0))).astype(np.float32)
        for ours, theirs in zip(getattr(onnx_nets, name)(batch), getattr(torch_nets, name)(batch)):
            assert ours.shape == theirs.shape
            np.testing.assert_allclose(ours, theirs, atol=1e-4)


@pytest.mark.parametrize("image", ["astronaut", "grace_hopper"])
def test_cascade_finds_the_faces_facenet_pytorch_finds(image, request, onnx_nets, reference):
    frame = request.getfixturevalue(image)
    expected = [row[:4] for row in reference(frame) if row[4] >= 0.9]
    found = [row for row in detect_faces(frame[None], onnx_nets)[0] if row[4] >= 0.9]
    assert len(found) == len(expected) == 1
    assert iou(tuple(found[0][:4]), tuple(expected[0])) > 0.85  # 0.89-0.99 on the fixture photos: resampling differs
    assert found[0][4] > 0.99


def test_one_batch_of_tiles_gives_each_tile_its_own_faces(onnx_nets, astronaut):
    face = astronaut[0:256, 96:352].copy()  # the face sits in this 256-px square
    tiles = np.stack([face, np.full_like(face, 90)])
    found = detect_faces(tiles, onnx_nets, min_face=40)
    assert len(found) == 2
    assert len([row for row in found[0] if row[4] >= 0.9]) == 1
    assert len(found[1]) == 0


def test_nms_keeps_the_best_of_overlapping_boxes_and_separate_boxes():
    boxes = np.array([[0, 0, 10, 10, 0.8], [1, 1, 11, 11, 0.9], [50, 50, 60, 60, 0.7], [2, 2, 6, 6, 0.95]], np.float32)
    assert sorted(nms(boxes, 0.5)) == [1, 2, 3]  # the small box overlaps the others by less than half their union
    assert sorted(nms(boxes, 0.5, mode="min")) == [2, 3]  # but lies inside them: min mode drops them
    assert nms(np.zeros((0, 5), np.float32), 0.5).size == 0


def test_pyramid_starts_where_the_smallest_face_fills_a_cell_and_stops_at_one_cell():
    scales = pyramid_scales(480, 640, min_face=20, factor=0.709)
    assert scales[0] == pytest.approx(12 / 20)
    assert 480 * scales[-1] >= 12 > 480 * scales[-1] * 0.709


def test_pyramid_levels_read_from_halved_copies_match_levels_read_from_the_frame(astronaut):
    frame = np.concatenate([astronaut, astronaut[::-1]], axis=1)  # 512 x 1024: even down to 1/512
    scales = pyramid_scales(*frame.shape[:2], min_face=20, factor=0.709)
    levels = list(pyramid(frame[None], scales))
    assert len(levels) == len(scales)
    for scale, level in zip(scales, levels):
        size = (int(1024 * scale + 1), int(512 * scale + 1))
        direct = cv2.resize(frame, size, interpolation=cv2.INTER_AREA)
        assert level.shape == (1, *direct.shape)
        difference = np.abs(level[0].astype(int) - direct).mean()  # in grey levels out of 255
        assert difference == 0 if scale > 1 / 4 else difference < 4


def test_squares_keep_the_centre_and_take_the_longer_side():
    (square,) = to_squares(np.array([[10, 20, 30, 60, 0.9]], np.float32))
    np.testing.assert_allclose(square[:4], [0, 20, 40, 60])


def test_finding_faces_imports_neither_torch_nor_torchvision():
    code = ("import sys, skimage.data\n"
            "from app.core.factory import build_pipeline\n"
            "pipeline = build_pipeline()\n"
            "result = pipeline.process(skimage.data.astronaut())\n"
            "assert len(result.faces) == 1, result.faces\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'facenet_pytorch')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
