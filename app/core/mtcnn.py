"""MTCNN (Zhang et al., 2016) in numpy around three small networks: the detector adapter's engine, and
the only module that touches facenet_pytorch.

The networks are facenet-pytorch's (its weights, exported once to ``assets/mtcnn`` by
``tools/export_mtcnn.py``). ``OnnxNets`` runs them with onnxruntime, so finding faces needs neither
torch nor torchvision (importing those two took most of the app's start-up); ``TorchNets`` runs
facenet-pytorch's own modules for comparison. The cascade follows the paper and facenet-pytorch's
numbers: a 12-px proposal net over an image pyramid, a 24-px refine net, a 48-px output net, each
stage keeping boxes above its threshold, regressing them and suppressing overlaps.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

CELL, STRIDE = 12, 2  # P-Net looks at 12-px cells, two pixels apart


def mtcnn_folder() -> Path:
    return Path(str(resources.files("fer_emotion.assets") / "mtcnn"))


class Nets(Protocol):
    """The three networks on normalised NCHW float32 batches; probabilities are the face class's; O-Net also
    gives five landmarks (eyes, nose, mouth corners) as the x of each, then the y, in shares of its patch."""

    device: str  # "CPU" or "CUDA"

    def pnet(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...  # (N,4,r,c), (N,r,c)

    def rnet(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...  # (N,4), (N,)

    def onet(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...  # (N,4), (N,), (N,10)


class _Stages:
    """The three stages on top of a backend's ``_run(name, batch)``, which returns the network's outputs
    in facenet-pytorch's order (regression, [landmarks,] two-class probabilities)."""

    def _run(self, name: str, batch: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def pnet(self, batch):
        regression, probability = self._run("pnet", batch)
        return regression, probability[:, 1]

    def rnet(self, batch):
        regression, probability = self._run("rnet", batch)
        return regression, probability[:, 1]

    def onet(self, batch):
        regression, landmarks, probability = self._run("onet", batch)
        return regression, probability[:, 1], landmarks


class OnnxNets(_Stages):
    """The networks exported to ONNX (assets/mtcnn), run by onnxruntime (CPU or CUDA)."""

    def __init__(self, device: str = "auto", threads: int = 1, folder: Path | None = None) -> None:
        from fer_emotion.app.core.classifier import open_session

        folder = folder or mtcnn_folder()
        self._sessions = {name: open_session(folder / f"{name}.onnx", device, threads)
                          for name in ("pnet", "rnet", "onet")}
        in_use = self._sessions["pnet"].get_providers()[0]
        self.device = "CUDA" if in_use == "CUDAExecutionProvider" else "CPU"

    def _run(self, name: str, batch: np.ndarray) -> list[np.ndarray]:
        return self._sessions[name].run(None, {"input": np.ascontiguousarray(batch, np.float32)})


class TorchNets(_Stages):
    """facenet-pytorch's modules (torch CPU or CUDA)."""

    def __init__(self, device: str = "auto", threads: int = 1) -> None:
        import torch
        from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

        self._torch = torch
        if threads:
            torch.set_num_threads(threads)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._device = device
        self.device = device.upper()
        self._nets = {name: net().to(device).eval() for name, net in (("pnet", PNet), ("rnet", RNet), ("onet", ONet))}

    def _run(self, name: str, batch: np.ndarray) -> list[np.ndarray]:
        tensor = self._torch.from_numpy(np.ascontiguousarray(batch, np.float32)).to(self._device)
        with self._torch.inference_mode():
            return [t.cpu().numpy() for t in self._nets[name](tensor)]


def facenet_reference(min_face: float, thresholds, factor: float):
    """facenet-pytorch's own MTCNN on the CPU, as a function from a frame to rows of x1, y1, x2, y2,
    probability: the reference that benchmarks measure recall against."""
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, min_face_size=min_face, thresholds=list(thresholds), factor=factor,
                  post_process=False, device="cpu")

    def detect(frame: np.ndarray) -> np.ndarray:
        boxes, probs = mtcnn.detect(np.ascontiguousarray(frame[:, :, :3]))
        if boxes is None:
            return np.zeros((0, 5), np.float32)
        return np.column_stack([boxes, probs]).astype(np.float32)

    return detect


def make_nets(backend: str = "onnx", device: str = "auto", threads: int = 1) -> Nets:
    if backend == "onnx":
        return OnnxNets(device, threads)
    if backend == "torch":
        return TorchNets(device, threads)
    raise ValueError(f"unknown detector backend {backend!r} (use onnx or torch)")


def eye_roll(landmarks: np.ndarray) -> np.ndarray:
    """Degrees the line between the eyes turns from level on square patches, from O-Net's landmarks:
    positive where the eye on the image's right is lower (the image's y axis points down)."""
    return np.degrees(np.arctan2(landmarks[:, 6] - landmarks[:, 5], landmarks[:, 1] - landmarks[:, 0]))


def face_rolls(faces: np.ndarray, nets: Nets, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """O-Net on whole face crops (gray uint8, N x S x S), each taken as the face's box: the roll of each
    face (see ``eye_roll``) and O-Net's probability that it is a face."""
    rolls, probs = [], []
    for start in range(0, len(faces), batch):
        chunk = faces[start:start + batch]
        if chunk.shape[1:] != (48, 48):
            chunk = _resize_all(chunk, (48, 48))
        _, prob, landmarks = nets.onet(normalise(np.repeat(chunk[..., None], 3, axis=3)))
        rolls.append(eye_roll(landmarks))
        probs.append(prob)
    if not rolls:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    return np.concatenate(rolls).astype(np.float32), np.concatenate(probs).astype(np.float32)


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC RGB -> float32 NCHW in [-1, 1], as MTCNN was trained."""
    return ((images.astype(np.float32) - 127.5) * 0.0078125).transpose(0, 3, 1, 2)


def pyramid_scales(height: int, width: int, min_face: float, factor: float) -> list[float]:
    """Scales at which a ``min_face``-px face becomes one 12-px cell, down to where the image is one cell."""
    scale = CELL / min_face
    side = min(height, width) * scale
    scales = []
    while side >= CELL:
        scales.append(scale)
        scale *= factor
        side *= factor
    return scales


def nms(boxes: np.ndarray, threshold: float, mode: str = "union") -> np.ndarray:
    """Indices of the boxes (rows x1, y1, x2, y2, score, ...) kept by greedy non-maximum suppression.

    ``union`` compares overlap with the union of two boxes, ``min`` with the smaller one (which also
    drops a small box lying inside a bigger one)."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    # Coordinates in score order, shrunk together as boxes are suppressed: a crowded 1080p frame keeps
    # thousands of P-Net windows, so each round is a few whole-array operations.
    index = np.argsort(-boxes[:, 4], kind="stable")
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[index, column]) for column in range(4))
    area = (x2 - x1) * (y2 - y1)
    keep = []
    while index.size:
        keep.append(index[0])
        w = np.maximum(np.minimum(x2[0], x2[1:]) - np.maximum(x1[0], x1[1:]), 0)
        h = np.maximum(np.minimum(y2[0], y2[1:]) - np.maximum(y1[0], y1[1:]), 0)
        overlap = w * h
        other = np.minimum(area[0], area[1:]) if mode == "min" else area[0] + area[1:] - overlap
        left = np.flatnonzero(overlap / np.maximum(other, 1e-9) <= threshold) + 1
        index, x1, y1, x2, y2, area = index[left], x1[left], y1[left], x2[left], y2[left], area[left]
    return np.asarray(keep, np.int64)


def regress(boxes: np.ndarray, shifts: np.ndarray, extra: float = 1.0) -> np.ndarray:
    """Boxes moved by the networks' regression, given as shares of the box's width and height."""
    moved = boxes.copy()
    width = boxes[:, 2] - boxes[:, 0] + extra
    height = boxes[:, 3] - boxes[:, 1] + extra
    moved[:, 0] += shifts[:, 0] * width
    moved[:, 1] += shifts[:, 1] * height
    moved[:, 2] += shifts[:, 2] * width
    moved[:, 3] += shifts[:, 3] * height
    return moved


def to_squares(boxes: np.ndarray) -> np.ndarray:
    """Each box widened to the square of its longer side around the same centre."""
    squares = boxes.copy()
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(width, height)
    squares[:, 0] = boxes[:, 0] + (width - side) / 2
    squares[:, 1] = boxes[:, 1] + (height - side) / 2
    squares[:, 2] = squares[:, 0] + side
    squares[:, 3] = squares[:, 1] + side
    return squares


def cut(image: np.ndarray, box, size: int) -> np.ndarray:
    """``box`` cut from ``image`` (zeros outside it) and resized to ``size`` x ``size`` by area averaging."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in box[:4])
    x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
    sx1, sy1, sx2, sy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    if sx1 == x1 and sy1 == y1 and sx2 == x2 and sy2 == y2:
        patch = image[y1:y2, x1:x2, :3]
    else:
        patch = np.zeros((y2 - y1, x2 - x1, 3), np.uint8)
        if sx2 > sx1 and sy2 > sy1:
            patch[sy1 - y1:sy2 - y1, sx1 - x1:sx2 - x1] = image[sy1:sy2, sx1:sx2, :3]
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)


def _resize_all(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return np.stack([cv2.resize(image, size, interpolation=cv2.INTER_AREA) for image in images])


def pyramid(images: np.ndarray, scales: list[float]):
    """The batch resized to each scale (by area averaging, as facenet-pytorch does).

    Area averaging costs in proportion to the source, and twelve levels read from a 1080p frame took
    a quarter of a detection; so a level is read from the smallest exact half, quarter, ... of the frame
    (2x2 averages, halved while both sides are even) that is still at least four times its size: about
    4x faster there, a few grey levels off on the smallest levels, and the same boxes as facenet-pytorch
    on the crowd clip (recall 0.991 either way)."""
    height, width = images.shape[1:3]
    source, source_scale = images, 1.0
    for scale in scales:
        while scale <= source_scale / 4 and source.shape[1] % 2 == 0 and source.shape[2] % 2 == 0:
            source = _resize_all(source, (source.shape[2] // 2, source.shape[1] // 2))
            source_scale /= 2
        yield _resize_all(source, (int(width * scale + 1), int(height * scale + 1)))


def propose(images: np.ndarray, nets: Nets, min_face: float, threshold: float, factor: float) -> list[np.ndarray]:
    """Stage 1: P-Net over the pyramid of each image (all images at one scale in one call)."""
    count, height, width = images.shape[:3]
    found: list[list[np.ndarray]] = [[] for _ in range(count)]
    scales = pyramid_scales(height, width, min_face, factor)
    for scale, resized in zip(scales, pyramid(images, scales)):
        shifts, probability = nets.pnet(normalise(resized))
        for index in range(count):
            rows, cols = np.nonzero(probability[index] >= threshold)
            if rows.size == 0:
                continue
            boxes = np.column_stack([
                np.floor((STRIDE * cols + 1) / scale), np.floor((STRIDE * rows + 1) / scale),
                np.floor((STRIDE * cols + CELL) / scale), np.floor((STRIDE * rows + CELL) / scale),
                probability[index, rows, cols], shifts[index][:, rows, cols].T,
            ]).astype(np.float32)
            found[index].append(boxes[nms(boxes, 0.5)])
    proposals = []
    for boxes in found:
        boxes = np.concatenate(boxes) if boxes else np.zeros((0, 9), np.float32)
        boxes = boxes[nms(boxes, 0.7)]
        proposals.append(to_squares(regress(boxes[:, :5], boxes[:, 5:9], extra=0.0)))
    return proposals


def check(images: np.ndarray, boxes: list[np.ndarray], net, side: int, threshold: float, mode: str) -> list[np.ndarray]:
    """Stages 2 and 3: every image's boxes cut, resized to ``side`` and scored in one call; the kept
    boxes suppressed (overlap 0.7) and regressed: R-Net suppresses first, O-Net regresses first and
    compares overlaps with the smaller box (``mode`` min). A net that gives landmarks (O-Net) adds each
    box's eye roll (``eye_roll``) as a sixth column."""
    counts = [len(b) for b in boxes]
    if sum(counts) == 0:
        return boxes
    patches = np.stack([cut(image, box, side) for image, image_boxes in zip(images, boxes) for box in image_boxes])
    shifts, probability, *landmarks = net(normalise(patches))
    rolls = eye_roll(landmarks[0]) if landmarks else None
    kept, start = [], 0
    for image_boxes, count in zip(boxes, counts):
        score, shift = probability[start:start + count], shifts[start:start + count]
        keep = score >= threshold
        chosen = image_boxes[keep, :5].copy()
        chosen[:, 4] = score[keep]
        if rolls is not None:
            chosen = np.column_stack([chosen, rolls[start:start + count][keep]]).astype(np.float32)
        start += count
        shift = shift[keep]
        if mode == "min":
            chosen = regress(chosen, shift)
            kept.append(chosen[nms(chosen, 0.7, mode)])
        else:
            pick = nms(chosen, 0.7, mode)
            kept.append(regress(chosen[pick], shift[pick]))
    return kept


def detect_faces(images: np.ndarray, nets: Nets, min_face: float = 20, thresholds=(0.6, 0.7, 0.7),
                 factor: float = 0.709) -> list[np.ndarray]:
    """Faces in each image of a batch (N x H x W x 3 uint8 RGB, one size): per image, rows of
    x1, y1, x2, y2, probability, eye roll in degrees."""
    boxes = propose(images, nets, min_face, thresholds[0], factor)
    boxes = check(images, boxes, nets.rnet, 24, thresholds[1], "union")
    boxes = [to_squares(b) for b in boxes]
    return check(images, boxes, nets.onet, 48, thresholds[2], "min")
