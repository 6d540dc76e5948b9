"""Signed weights for int8 (QDQ) ONNX models that store some layers' weights as uint8, rewritten in the file's
bytes: the app reads and writes this much of the ONNX format itself rather than depend on the onnx package.

Why: training.quantize stores the first layers' weights as uint8 (zero point 128), because x86 CPUs without
VNNI add uint8 x int8 products in saturating 16-bit pairs and only uint8 x uint8 is exact there. Where the
CPU has VNNI (or is not x86) uint8 x int8 is exact and much faster: on the Intel Xeon host (AVX-512 VNNI)
fer2013_vgg.onnx's second layer took 3.5 times as long with uint8 weights, and the whole model 1.2-1.3 times.
The classifier tries this copy first and keeps it only where its results are the model's own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

# Field numbers and type codes of onnx.proto
MODEL_GRAPH = 7
GRAPH_NODE, GRAPH_INITIALIZER = 1, 5
NODE_INPUT, NODE_OUTPUT, NODE_OP_TYPE = 1, 2, 4
TENSOR_DATA_TYPE, TENSOR_NAME, TENSOR_RAW_DATA, TENSOR_EXTERNAL_DATA = 2, 8, 9, 13
UINT8, INT8 = 2, 3
VARINT, LENGTH_DELIMITED = 0, 2
WEIGHT_LAYERS = ("Conv", "Gemm", "MatMul")


@dataclass
class Node:
    op_type: str = ""
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


@dataclass
class Tensor:
    name: str = ""
    data_type: int = 0
    data_type_at: int = -1  # where the data type's one-byte varint is
    raw: tuple[int, int] | None = None  # where raw_data's bytes are
    external: bool = False  # its data is in a file beside the model


def signed_weights(model: bytes) -> bytes | None:
    """A copy of an ONNX model in which every uint8 weight tensor of a Conv/Gemm/MatMul layer whose zero point
    is 128 is int8 with zero point 0: the same numbers (v - 128 is v with its top bit flipped, read as int8),
    so the model means what it meant. None when there is no such tensor (a float model, or one converted), or
    when the model keeps tensors in files beside it."""
    data = bytearray(model)
    graph = next(((start, end) for number, wire, start, end in _fields(data, 0, len(data))
                  if number == MODEL_GRAPH and wire == LENGTH_DELIMITED), None)
    if graph is None:
        return None
    nodes, tensors = [], {}
    for number, wire, start, end in _fields(data, *graph):
        if wire == LENGTH_DELIMITED and number == GRAPH_NODE:
            nodes.append(_node(data, start, end))
        elif wire == LENGTH_DELIMITED and number == GRAPH_INITIALIZER:
            tensor = _tensor(data, start, end)
            tensors[tensor.name] = tensor
    if any(tensor.external for tensor in tensors.values()):
        return None  # a copy in memory would not find the files beside the model
    readers = Counter(name for node in nodes for name in node.inputs)
    producers = {name: node for node in nodes for name in node.outputs}
    changed = 0
    for node in nodes:
        source = producers.get(node.inputs[1]) if node.op_type in WEIGHT_LAYERS and len(node.inputs) > 1 else None
        if source is None or source.op_type != "DequantizeLinear" or len(source.inputs) < 3:
            continue
        weights, zero_point = tensors.get(source.inputs[0]), tensors.get(source.inputs[2])
        if weights is None or zero_point is None or not _convertible(data, weights, zero_point, readers):
            continue
        for tensor in (weights, zero_point):
            data[tensor.data_type_at] = INT8
            start, end = tensor.raw
            data[start:end] = (np.frombuffer(data, np.uint8, end - start, start) ^ 0x80).tobytes()
        changed += 1
    return bytes(data) if changed else None


def _convertible(data: bytearray, weights: Tensor, zero_point: Tensor, readers: Counter) -> bool:
    """uint8 weights of their own (no other node reads them or their zero point), stored as raw bytes, with
    zero point 128 throughout."""
    tensors = (weights, zero_point)
    if any(t.data_type != UINT8 or t.raw is None or t.data_type_at < 0 or readers[t.name] != 1 for t in tensors):
        return False
    start, end = zero_point.raw
    return end > start and all(byte == 0x80 for byte in data[start:end])


def _node(data: bytearray, start: int, end: int) -> Node:
    node = Node()
    for number, wire, first, last in _fields(data, start, end):
        if wire != LENGTH_DELIMITED:
            continue
        if number == NODE_INPUT:
            node.inputs.append(data[first:last].decode())
        elif number == NODE_OUTPUT:
            node.outputs.append(data[first:last].decode())
        elif number == NODE_OP_TYPE:
            node.op_type = data[first:last].decode()
    return node


def _tensor(data: bytearray, start: int, end: int) -> Tensor:
    tensor = Tensor()
    for number, wire, first, last in _fields(data, start, end):
        if number == TENSOR_DATA_TYPE and wire == VARINT:
            tensor.data_type = _varint(data, first)[0]
            tensor.data_type_at = first if last - first == 1 else -1
        elif number == TENSOR_NAME and wire == LENGTH_DELIMITED:
            tensor.name = data[first:last].decode()
        elif number == TENSOR_RAW_DATA and wire == LENGTH_DELIMITED:
            tensor.raw = (first, last)
        elif number == TENSOR_EXTERNAL_DATA:
            tensor.external = True
    return tensor


def _fields(data: bytearray, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, start, end) of each field of the protobuf message in data[start:end]: for a
    length-delimited field the span of its contents, for the others the span of the value's bytes."""
    position = start
    while position < end:
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if wire == VARINT:
            after = _varint(data, position)[1]
        elif wire == 1:  # 64-bit
            after = position + 8
        elif wire == LENGTH_DELIMITED:
            length, position = _varint(data, position)
            after = position + length
        elif wire == 5:  # 32-bit
            after = position + 4
        else:
            raise ValueError(f"protobuf wire type {wire} at byte {position}: not an ONNX model")
        if after > end:
            raise ValueError(f"a field runs past its message at byte {position}: not an ONNX model")
        yield number, wire, position, after
        position = after


def _varint(data: bytearray, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(data):
            raise ValueError("a varint runs past the end: not an ONNX model")
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7
