"""8-bit ONNX models: static QDQ quantisation calibrated on training faces, checked against float."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from fer_emotion.app.core.crop import normalize
from fer_emotion.app.core.metadata import ModelInfo

log = logging.getLogger(__name__)
MIN_AGREEMENT = 0.97  # share of faces whose top class must match the float model's
# Weight layers, counted from the input, stored as uint8 (see unsigned_weights); the first of them then runs
# in float where the graph allows (float_first_layer), so uint8 matters for the second.
UNSIGNED_LAYERS = 2


def quantize_onnx(float_path: Path, out: Path, faces: np.ndarray, info: ModelInfo, check_faces: np.ndarray) -> dict:
    """Write an int8 copy of ``float_path`` (metadata kept) calibrated on ``faces`` (uint8 N x S x S).

    Refuses (ExportError) when its top class agrees with the float model's on fewer than 97% of
    ``check_faces``. Returns the agreement and the largest probability difference.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from fer_emotion.training.export import ExportError

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
        float_first_layer(model)
        onnx.helper.set_model_props(model, {**info.to_props(), "precision": "int8"})
        onnx.save(model, quantized)
        ort.set_default_logger_severity(3)
        inputs = normalize(check_faces, info.mean, info.std)
        sessions = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (float_path, quantized))
        float_probs, int8_probs = (_probabilities(session, inputs) for session in sessions)
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
    about 30% slower; 7-bit weights (as onnxruntime's reduce_range) were still off. Where uint8 x int8 is
    exact (VNNI, or not x86) it is also much the faster, and the app reads these weights back as int8
    (app.core.qdq.signed_weights).
    """
    changed = 0
    for index, (_, weights, zero_point) in enumerate(_weight_layers(model.graph)):
        if layers is not None and index == layers:
            break
        if weights.data_type != onnx.TensorProto.INT8:
            continue
        values, zeros = _array(weights), _array(zero_point)
        if zeros.any():
            raise ValueError(f"{weights.name}: unsigned_weights expects symmetric int8 weights (zero point 0)")
        weights.CopyFrom(numpy_helper.from_array((values.astype(np.int16) + 128).astype(np.uint8), weights.name))
        zero_point.CopyFrom(numpy_helper.from_array(np.full(zeros.shape, 128, np.uint8), zero_point.name))
        changed += 1
    return changed


def float_first_layer(model: onnx.ModelProto) -> bool:
    """Run the first weight layer of a QDQ model as a float convolution on its dequantised weights, with the
    max-pool after it on float values, where the graph reads conv -> Q -> DQ -> MaxPool -> Q -> DQ with one
    zero point 0 and scale for both: returns whether it changed anything (nothing unless that pattern is there).

    The same numbers reach the next layer: the input keeps its Q -> DQ pair, the weights and bias are their
    own dequantised values, quantising is monotonic (so it commutes with the max) and clamps below zero (so
    the Relu added after the pool changes nothing). Why: onnxruntime's fused kernel for a convolution of one
    input channel is its slowest per multiply (on an AVX2 AMD EPYC the first layer took a fifth of the
    model's time for 1% of its multiplies), and a uint8 max-pool between a float layer and the fused ones
    runs in a slow NCHW loop; the Relu keeps onnxruntime from moving the quantisation back before the pool.
    """
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producers = {name: node for node in graph.node for name in node.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)

    def only_reader(name: str, op_type: str) -> onnx.NodeProto | None:
        nodes = readers.get(name, [])
        return nodes[0] if len(nodes) == 1 and nodes[0].op_type == op_type else None

    first, _, weight_zero_point = next(_weight_layers(graph), (None, None, None))
    if weight_zero_point is None or first.op_type != "Conv" or first.output[0] in {out.name for out in graph.output}:
        return False  # no quantised first layer (a float model, or one converted already)
    quantize = only_reader(first.output[0], "QuantizeLinear")
    dequantize = quantize and only_reader(quantize.output[0], "DequantizeLinear")
    pool = dequantize and only_reader(dequantize.output[0], "MaxPool")
    requantize = pool and only_reader(pool.output[0], "QuantizeLinear")
    if requantize is None or len(quantize.input) < 3 or list(requantize.input[1:]) != list(quantize.input[1:]):
        return False
    zero_point = initializers.get(quantize.input[2])
    if zero_point is None or zero_point.data_type != onnx.TensorProto.UINT8 or _array(zero_point).any():
        return False

    for slot in range(1, len(first.input)):
        source = producers.get(first.input[slot])
        if source is not None and source.op_type == "DequantizeLinear":
            name = f"{first.input[slot]}_float"
            graph.initializer.append(numpy_helper.from_array(_dequantized(source, initializers), name))
            first.input[slot] = name
    pooled = pool.output[0]
    pool.input[0], pool.output[0] = first.output[0], f"{pooled}_unclamped"
    graph.node.insert(list(graph.node).index(pool) + 1,
                      helper.make_node("Relu", [pool.output[0]], [pooled], name=f"{pool.name}_relu"))
    _drop_unused(graph)
    return True


def _weight_layers(graph: onnx.GraphProto):
    """(node, weights, zero point) of each Conv/Gemm/MatMul with constant weights, in graph order; the zero
    point is None where the weights are float (not quantised)."""
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producers = {name: node for node in graph.node for name in node.output}
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 2:
            continue
        if node.input[1] in initializers:
            yield node, initializers[node.input[1]], None
            continue
        dequantize = producers.get(node.input[1])
        if dequantize is None or dequantize.op_type != "DequantizeLinear" or len(dequantize.input) < 3:
            continue
        weights, zero_point = (initializers.get(name) for name in (dequantize.input[0], dequantize.input[2]))
        if weights is not None and zero_point is not None:
            yield node, weights, zero_point


def _array(tensor: onnx.TensorProto) -> np.ndarray:
    return numpy_helper.to_array(tensor)


def _dequantized(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]) -> np.ndarray:
    """What a DequantizeLinear node of constant inputs gives, in float32 as onnxruntime computes it."""
    values, scale = _array(initializers[node.input[0]]), _array(initializers[node.input[1]]).astype(np.float32)
    zero = _array(initializers[node.input[2]]) if len(node.input) > 2 and node.input[2] else np.zeros_like(scale)
    axis = next((attribute.i for attribute in node.attribute if attribute.name == "axis"), 1)
    if scale.ndim == 1 and values.ndim > 1:
        shape = [1] * values.ndim
        shape[axis] = -1
        if scale.size != values.shape[axis]:
            raise ValueError(f"{node.name}: {scale.size} scales for axis {axis} of a {values.shape} tensor")
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return (values.astype(np.int32) - zero.astype(np.int32)).astype(np.float32) * scale


def _drop_unused(graph: onnx.GraphProto) -> None:
    """Remove the nodes and initializers that no longer lead to a graph output."""
    while True:
        wanted = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
        unused = [node for node in graph.node if not any(name in wanted for name in node.output)]
        if not unused:
            break
        for node in unused:
            graph.node.remove(node)
    wanted = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
    for tensor in [tensor for tensor in graph.initializer if tensor.name not in wanted]:
        graph.initializer.remove(tensor)


def _probabilities(session, inputs: np.ndarray) -> np.ndarray:
    scores = np.concatenate([session.run(None, {"input": inputs[i:i + 256]})[0] for i in range(0, len(inputs), 256)])
    exp = np.exp(scores - scores.max(1, keepdims=True))
    return exp / exp.sum(1, keepdims=True)
