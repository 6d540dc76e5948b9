"""8-bit ONNX models: static QDQ quantisation calibrated on training faces, checked against float."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx

from app.core.crop import normalize
from app.core.metadata import ModelInfo

log = logging.getLogger(__name__)
MIN_AGREEMENT = 0.97  # share of faces whose top class must match the float model's
# Weight layers, counted from the input, stored as uint8 (see unsigned_weights).
UNSIGNED_LAYERS = 2


def quantize_onnx(float_path: Path, out: Path, faces: np.ndarray, info: ModelInfo, check_faces: np.ndarray) -> dict:
    """Write an int8 copy of ``float_path`` (metadata kept) calibrated on ``faces`` (uint8 N x S x S).

    Refuses (ExportError) when its top class agrees with the float model's on fewer than 97% of
    ``check_faces``. Returns the agreement and the largest probability difference.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from training.export import ExportError

    class Faces(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(normalize(faces[i:i + 64], info.mean, info.std) for i in range(0, len(faces), 64))

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {"input": batch}

    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        prepared, quantized = Path(scratch) / "prepared.onnx", Path(scratch) / "int8.onnx"
        quant_pre_process(str(float_path), str(prepared))
        quantize_static(str(prepared), str(quantized), Faces(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        model = onnx.load(quantized)
        unsigned_weights(model, UNSIGNED_LAYERS)
        onnx.helper.set_model_props(model, {**info.to_props(), "precision": "int8"})
        onnx.save(model, quantized)
        ort.set_default_logger_severity(3)
        inputs = normalize(check_faces, info.mean, info.std)
        float_probs, int8_probs = (_probabilities(ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]), inputs)
                                   for p in (float_path, quantized))
        agreement = float((float_probs.argmax(1) == int8_probs.argmax(1)).mean())
        difference = float(np.abs(float_probs - int8_probs).max())
        if agreement < MIN_AGREEMENT:
            raise ExportError(f"the int8 model agrees with the float model on {agreement:.1%} of faces "
                              f"(< {MIN_AGREEMENT:.0%}); not written")
        os.chmod(quantized, 0o644)
        os.replace(quantized, out)
    return {"agreement": agreement, "max_prob_difference": difference}


def unsigned_weights(model: onnx.ModelProto, layers: int | None = None) -> int:
    """Store the int8 weights of the first ``layers`` weight layers (all when None) of a QDQ model as uint8
    with zero point 128: the same numbers, so the model means what it meant. Returns how many changed.

    Why: on x86 CPUs without VNNI (AVX2 only) onnxruntime's fused kernels for uint8 activations x int8
    weights add products in pairs into saturating 16-bit sums; uint8 x uint8 takes a path without that
    limit. It bites in the first layer, which sees the image through a mid-range zero point so that every
    activation is large (the shipped default lost 3.4 points of PublicTest to it), and a little in the
    second on noise. Measured on an AMD EPYC with the four shipped models: with the first two converted, the
    fused kernels give the unfused results (mean probability difference on noise faces at most 3e-4, was
    0.006-0.024) at about the speed of all-int8 weights (5% slower); every layer converted is as exact and
    about 30% slower; 7-bit weights (as onnxruntime's reduce_range) were still off.
    """
    from onnx import numpy_helper

    changed = 0
    for index, (weights, zero_point) in enumerate(_weight_layers(model.graph)):
        if layers is not None and index == layers:
            break
        if weights.data_type != onnx.TensorProto.INT8:
            continue
        values, zeros = numpy_helper.to_array(weights), numpy_helper.to_array(zero_point)
        if zeros.any():
            raise ValueError(f"{weights.name}: unsigned_weights expects symmetric int8 weights (zero point 0)")
        weights.CopyFrom(numpy_helper.from_array((values.astype(np.int16) + 128).astype(np.uint8), weights.name))
        zero_point.CopyFrom(numpy_helper.from_array(np.full(zeros.shape, 128, np.uint8), zero_point.name))
        changed += 1
    return changed


def _weight_layers(graph: onnx.GraphProto):
    """(weights, zero point) initializers of each quantised Conv/Gemm/MatMul, in graph order."""
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producers = {name: node for node in graph.node for name in node.output}
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        dequantize = producers.get(node.input[1])
        if dequantize is None or dequantize.op_type != "DequantizeLinear" or len(dequantize.input) < 3:
            continue
        weights, zero_point = (initializers.get(name) for name in (dequantize.input[0], dequantize.input[2]))
        if weights is not None and zero_point is not None:
            yield weights, zero_point


def _probabilities(session, inputs: np.ndarray) -> np.ndarray:
    scores = np.concatenate([session.run(None, {"input": inputs[i:i + 256]})[0] for i in range(0, len(inputs), 256)])
    exp = np.exp(scores - scores.max(1, keepdims=True))
    return exp / exp.sum(1, keepdims=True)
