"""``fer-train export --ensemble``: several models as one self-describing ONNX file.

The graph runs every member on the same faces (and, with flip TTA, on their mirror images in the same call),
averages the members' probabilities and returns their logarithm as its scores, so the app's softmax gives
back the average: the app, fer-annotate and fer-train eval load it like any other model.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import onnx.utils
from onnx import TensorProto, helper, numpy_helper

from fer_emotion.app.core.metadata import ModelInfo, ModelMetadataError, created_now

log = logging.getLogger(__name__)
SHARED_FIELDS = ("labels", "input_size", "grayscale", "mean", "std", "crop_margin")  # members must agree on these
PARITY_TOLERANCE = 1e-4  # largest |ensemble - mean of members| on probabilities
SMALLEST_PROBABILITY = 1e-30  # floor under the average before its logarithm
WITH_MIRRORS = "faces"  # with flip TTA, the batch every member reads: the faces, then their mirror images


class EnsembleError(ValueError):
    """Members that cannot be put together, or an ensemble that does not compute their average."""


@dataclass(frozen=True)
class Member:
    path: Path
    info: ModelInfo
    proto: onnx.ModelProto


def read_member(path: Path) -> Member:
    try:
        proto = onnx.load(str(path))
    except Exception as err:  # onnx raises DecodeError, OSError and others for what is not a model
        raise EnsembleError(f"{path}: not a readable ONNX model ({type(err).__name__})") from None
    try:
        info = ModelInfo.from_props({p.key: p.value for p in proto.metadata_props}, source=str(path))
    except ModelMetadataError as err:
        raise EnsembleError(str(err)) from None
    return Member(path, info, proto)


def check_members(members: list[Member]) -> None:
    """Refuse members that would need other faces or give other classes than the first member."""
    if len(members) < 2:
        raise EnsembleError("an ensemble needs at least two members")
    first = members[0]
    for member in members[1:]:
        for name in SHARED_FIELDS:
            if getattr(member.info, name) != getattr(first.info, name):
                raise EnsembleError(f"{member.path}: its {name} {getattr(member.info, name)!r} differs from "
                                    f"{first.path.name}'s {getattr(first.info, name)!r}; members must share "
                                    f"{', '.join(SHARED_FIELDS)}")
    if len({m.info.levels_eyes for m in members}) > 1:
        log.warning("some members were trained on faces with level eyes and some not; the ensemble gets the faces "
                    "as they are, so the levelled members see unlevelled faces")


def _opset(proto: onnx.ModelProto) -> int:
    return next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)


def _member_graph(member: Member, index: int, opset: int) -> onnx.GraphProto:
    proto = member.proto
    if _opset(proto) != opset:
        try:
            proto = onnx.version_converter.convert_version(proto, opset)
        except Exception as err:  # the converter raises plain RuntimeErrors for ops it cannot move
            raise EnsembleError(f"{member.path}: cannot convert it to opset {opset} ({err})") from None
    return onnx.compose.add_prefix(proto, f"m{index}_").graph


def ensemble_graph(members: list[Member], flip: bool) -> onnx.ModelProto:
    """One model that averages the members' softmax probabilities (over each face and its mirror with ``flip``)."""
    opset = max(_opset(m.proto) for m in members)
    size = members[0].info.input_size
    classes = len(members[0].info.labels)
    nodes, initializers = [], [numpy_helper.from_array(np.array(1.0 / len(members), np.float32), "member_share"),
                               numpy_helper.from_array(np.array(SMALLEST_PROBABILITY, np.float32), "smallest")]
    faces = "input"
    if flip:  # the faces and their mirror images in one batch: [x; x[..., ::-1]]
        initializers += [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in
                         (("flip_starts", [-1]), ("flip_ends", [np.iinfo(np.int64).min]), ("flip_axes", [3]),
                          ("flip_steps", [-1]))]
        initializers.append(numpy_helper.from_array(np.array(0.5, np.float32), "half"))
        nodes += [helper.make_node("Slice", ["input", "flip_starts", "flip_ends", "flip_axes", "flip_steps"], ["mirrored"]),
                  helper.make_node("Concat", ["input", "mirrored"], [WITH_MIRRORS], axis=0)]
        faces = WITH_MIRRORS
    probabilities = []
    for index, member in enumerate(members):
        graph = _member_graph(member, index, opset)
        own_input, own_output = graph.input[0].name, graph.output[0].name
        for node in graph.node:
            node.input[:] = [faces if name == own_input else name for name in node.input]
        nodes.extend(graph.node)
        initializers.extend(graph.initializer)
        nodes.append(helper.make_node("Softmax", [own_output], [f"m{index}_probabilities"], axis=1))
        probabilities.append(f"m{index}_probabilities")
    nodes += [helper.make_node("Sum", probabilities, ["summed"]),
              helper.make_node("Mul", ["summed", "member_share"], ["averaged"])]
    if flip:  # the batch's two halves are the faces and their mirrors
        initializers += [numpy_helper.from_array(np.array([2, -1, classes], np.int64), "halves_shape"),
                         numpy_helper.from_array(np.array(0, np.int64), "first"),
                         numpy_helper.from_array(np.array(1, np.int64), "second")]
        nodes += [helper.make_node("Reshape", ["averaged", "halves_shape"], ["halves"]),  # (2, batch, classes)
                  helper.make_node("Gather", ["halves", "first"], ["upright"], axis=0),
                  helper.make_node("Gather", ["halves", "second"], ["mirror"], axis=0),
                  helper.make_node("Add", ["upright", "mirror"], ["both"]),
                  helper.make_node("Mul", ["both", "half"], ["mean"])]
    else:
        nodes.append(helper.make_node("Identity", ["averaged"], ["mean"]))
    nodes += [helper.make_node("Max", ["mean", "smallest"], ["floored"]),
              helper.make_node("Log", ["floored"], ["scores"])]
    graph = helper.make_graph(
        nodes, "ensemble",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, size, size])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", classes])],
        initializer=initializers)
    domains = {o.domain: o.version for m in members for o in m.proto.opset_import if o.domain not in ("", "ai.onnx")}
    imports = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in sorted(domains.items())]
    model = helper.make_model(graph, opset_imports=imports, producer_name="fer-train")
    model.ir_version = max(m.proto.ir_version for m in members)
    return model


def ensemble_info(members: list[Member], flip: bool, metrics: dict, names: list[str] | None = None) -> ModelInfo:
    """The first member's preprocessing and classes; provenance that names every member."""
    first = members[0].info
    names = names or [m.path.name for m in members]
    listed = [{"file": name, "arch": m.info.arch, **({"val_acc": m.info.metrics["val_acc"]}
                                                     if "val_acc" in m.info.metrics else {})}
              for name, m in zip(names, members)]
    extra = {key: value for key, value in first.extra.items() if key in ("scheme", "vote_rule")}
    extra.update(members=json.dumps(listed), ensemble_tta="flip" if flip else "none")
    if all(m.info.extra.get("precision") == "int8" for m in members):
        extra["precision"] = "int8"  # so the app checks this CPU's fused int8 kernels on it, as on each member
    if all(m.info.levels_eyes for m in members):
        extra["align"] = "eyes"
    datasets = sorted({m.info.dataset for m in members if m.info.dataset})
    return replace(first, dataset=" + ".join(datasets), arch=f"ensemble of {len(members)}: "
                   + ", ".join(m.info.arch for m in members), created=created_now(),  # this file's, not a member's
                   metrics=metrics, extra=extra)


def probabilities(path: Path, faces: np.ndarray) -> np.ndarray:
    """A model file's probabilities on normalised faces (N, 1, S, S), straight from onnxruntime."""
    import onnxruntime as ort

    from fer_emotion.app.core.classifier import softmax

    ort.set_default_logger_severity(3)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return softmax(session.run(None, {session.get_inputs()[0].name: faces})[0])


def ensemble_parity(members: list[Member], ensemble: Path, faces: np.ndarray, flip: bool) -> float:
    """Largest difference between the ensemble's probabilities and the mean of its members' own."""
    views = [faces, np.ascontiguousarray(faces[:, :, :, ::-1])] if flip else [faces]
    expected = np.mean([probabilities(m.path, view) for m in members for view in views], axis=0)
    return float(np.abs(probabilities(ensemble, faces) - expected).max())


def write_ensemble(paths: list[Path], out: Path, flip: bool, metrics: dict | None = None,
                   names: list[str] | None = None) -> ModelInfo:
    """Put the ONNX models at ``paths`` together into ``out``, checked against the members' own average;
    ``names`` are what its metadata calls the members (default: their file names)."""
    from fer_emotion.training.export import real_inputs

    members = [read_member(path) for path in paths]
    check_members(members)
    info = ensemble_info(members, flip, metrics or {}, names)
    model = ensemble_graph(members, flip)
    helper.set_model_props(model, info.to_props())
    model.doc_string = f"average of {len(members)} facial-expression classifiers ({', '.join(info.labels)})"
    handle, temporary = tempfile.mkstemp(dir=out.parent, suffix=".onnx.tmp")
    os.close(handle)
    try:
        onnx.checker.check_model(model)
        onnx.save(model, temporary)
        difference = ensemble_parity(members, Path(temporary), real_inputs(info), flip)
        if difference > PARITY_TOLERANCE:
            raise EnsembleError(f"the ensemble's probabilities differ from its members' average by {difference:.2e} "
                                f"(> {PARITY_TOLERANCE}); not written")
        os.chmod(temporary, 0o644)
        os.replace(temporary, out)
    finally:
        Path(temporary).unlink(missing_ok=True)
    log.info("wrote %s: %d members%s, largest difference from their average %.1e", out, len(members),
             " with flip TTA" if flip else "", difference)
    return info


def split_ensemble(path: Path, folder: Path) -> list[tuple[Path, str]]:
    """An ensemble file's members as model files of their own in ``folder``, each with its metadata, and a name:
    ``ENSEMBLE.onnx: NAME`` for the name its metadata records, that name alone where it already names the
    ensemble it came through; a plain model: itself. So that an ensemble put into another one adds its
    members one by one (an equal share each), not as one member."""
    member = read_member(path)
    if "members" not in member.info.extra:
        return [(path, str(path))]
    start = WITH_MIRRORS if member.info.extra.get("ensemble_tta") == "flip" else "input"  # what the members read
    listed = json.loads(member.info.extra["members"])
    wanted = {f"m{index}_probabilities" for index in range(len(listed))}  # the softmax ensemble_graph put after each
    softmax_inputs = {node.output[0]: node.input[0] for node in member.proto.graph.node
                      if node.op_type == "Softmax" and node.output[0] in wanted}
    base = {k: v for k, v in member.info.extra.items() if k not in ("members", "ensemble_tta")}
    graph = onnx.ModelProto()
    graph.CopyFrom(member.proto)
    classes = len(member.info.labels)
    graph.graph.value_info.extend(  # the extractor wants to know each new output's type
        helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", classes]) for name in softmax_inputs.values())
    if start != "input":
        size = member.info.input_size
        graph.graph.value_info.append(helper.make_tensor_value_info(start, TensorProto.FLOAT, ["batch", 1, size, size]))
    parts = []
    for index, entry in enumerate(listed):
        logits = softmax_inputs.get(f"m{index}_probabilities")
        if logits is None:
            raise EnsembleError(f"{path}: member {index} ({entry['file']}) not found in its graph")
        proto = onnx.utils.Extractor(graph).extract_model([start], [logits])
        if start != "input":
            for node in proto.graph.node:
                node.input[:] = ["input" if name == start else name for name in node.input]
            proto.graph.input[0].name = "input"
        metrics = {"val_acc": entry["val_acc"]} if "val_acc" in entry else {}
        info = replace(member.info, arch=entry.get("arch", ""), metrics=metrics, extra=base)
        helper.set_model_props(proto, info.to_props())
        part = folder / f"{path.stem}_member{index}.onnx"
        onnx.save(proto, str(part))
        recorded = entry["file"]
        parts.append((part, recorded if ": " in recorded else f"{path.name}: {recorded}"))
    log.info("%s: its %d members join the ensemble one by one", path, len(parts))
    return parts


def export_ensemble(sources: list[Path], out: Path, int8: bool = False, flip: bool = False,
                    data: list[Path] | None = None) -> ModelInfo:
    """``fer-train export --ensemble``: checkpoints and run folders are exported first (as int8 with ``int8``),
    ONNX files are taken as they are, an ensemble file as its members; with ``data``, the ensemble's validation
    accuracy goes in its metadata. Returns what its metadata says (its members, its metrics)."""
    from fer_emotion.training.export import export_checkpoint

    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        paths, names = [], []
        for index, source in enumerate(sources):
            if source.suffix == ".onnx":
                for path, name in split_ensemble(source, Path(scratch)):
                    paths.append(path)
                    names.append(name)
                continue
            exported = Path(scratch) / f"member{index}.onnx"
            export_checkpoint(source, exported, int8=int8)
            paths.append(exported)
            names.append(str(source))
        info = write_ensemble(paths, out, flip, names=names)
    if not data:
        return info
    metrics = {"val_acc": round(validation_accuracy(out, data, info.extra.get("scheme") or "fer2013"), 4)}
    info = replace(info, metrics=metrics)
    proto = onnx.load(str(out))
    helper.set_model_props(proto, info.to_props())
    save_atomically(proto, out)
    return info


def save_atomically(proto: onnx.ModelProto, out: Path) -> None:
    """Write ``proto`` to ``out`` so that a crash leaves the old file or the new one, readable by all."""
    handle, temporary = tempfile.mkstemp(dir=out.parent, suffix=".onnx.tmp")
    os.close(handle)
    try:
        onnx.save(proto, temporary)
        os.chmod(temporary, 0o644)
        os.replace(temporary, out)
    finally:
        Path(temporary).unlink(missing_ok=True)


def validation_accuracy(path: Path, data: list[Path], scheme: str) -> float:
    """Accuracy on the validation split (FER2013's PublicTest), through the app's own classifier."""
    from fer_emotion.training.datasets import load_splits
    from fer_emotion.training.evaluate import onnx_probabilities

    val = load_splits(data, scheme)["val"]
    probs, _, _ = onnx_probabilities(path, val.images.numpy(), tta_flip=False)
    return float((probs.argmax(1) == val.labels.numpy()).mean())
