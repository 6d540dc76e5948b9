"""``fer-train export``: a checkpoint as one self-describing ONNX file, checked against PyTorch."""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

from fer_emotion.app.core.metadata import ModelInfo, created_now
from fer_emotion.models import create_model
from fer_emotion.training import labels as schemes
from fer_emotion.training.checkpoint import load_checkpoint, load_model_state, run_checkpoint

log = logging.getLogger(__name__)
PARITY_TOLERANCE = 1e-3  # largest allowed |ORT - PyTorch| on softmax probabilities


class ExportError(RuntimeError):
    """The exported model disagrees with PyTorch, or could not be written."""


def model_info(state: dict, tta: str = "none") -> ModelInfo:
    cfg = state["config"]
    classes = state.get("classes") or list(schemes.SCHEMES[cfg["labels"]])
    val = state.get("val", {})
    return ModelInfo(
        labels=tuple(classes),
        input_size=48,
        grayscale=True,
        mean=cfg["mean"],
        std=cfg["std"],
        crop_margin=cfg["crop_margin"],
        emoji={c: schemes.EMOJI[c] for c in classes if c in schemes.EMOJI},
        dataset=f"{'+'.join(Path(d).name for d in cfg['data'])} ({cfg['labels']} labels)",
        arch=cfg["arch"],
        created=created_now(),
        metrics={"val_acc": round(float(val.get("val_acc", 0.0)), 4), "epoch": int(state.get("epoch", 0))},
        extra={"framework": f"torch {torch.__version__}", "scheme": cfg["labels"],
               **({"tta": tta} if tta != "none" else {}),
               **({"align": cfg["align"]} if cfg.get("align", "none") != "none" else {}),
               **({"vote_rule": cfg.get("vote_rule", "plurality")} if cfg["labels"] == "ferplus" else {})},
    )


def real_inputs(info: ModelInfo, count: int = 16) -> np.ndarray:
    """Face-like inputs for the parity check: a real photo's face region at several shifts."""
    from skimage import data

    from fer_emotion.app.core.crop import crop_faces, normalize

    astronaut = data.astronaut()
    boxes = [(170 + dx, 40 + dy, 280 + dx, 180 + dy) for dx in range(-8, 8, 4) for dy in range(-8, 8, 4)]
    crops = crop_faces(astronaut, boxes[:count], info.input_size, info.crop_margin)
    return normalize(crops, info.mean, info.std)


def export_model(model: torch.nn.Module, info: ModelInfo, out: Path) -> float:
    """Write ``model`` as ONNX with ``info`` as metadata; return the largest probability difference."""
    model = model.eval().to("cpu", memory_format=torch.contiguous_format)
    size = info.input_size
    example = torch.zeros(2, 1, size, size)
    handle, temporary = tempfile.mkstemp(dir=out.parent, suffix=".onnx.tmp")
    os.close(handle)
    try:
        # The torch.export-based exporter: the TorchScript one (dynamo=False) is deprecated. Same int8 accuracy
        # and speed on the shipped FER2013 checkpoint (0.6896 on PublicTest either way).
        torch.onnx.export(model, (example,), temporary, input_names=["input"], output_names=["scores"],
                          dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), opset_version=18,
                          dynamo=True, external_data=False, verbose=False)
        proto = onnx.load(temporary)
        onnx.helper.set_model_props(proto, info.to_props())
        proto.doc_string = f"{info.arch} facial-expression classifier ({', '.join(info.labels)})"
        onnx.save(proto, temporary)
        difference = parity(model, temporary, real_inputs(info))
        if difference > PARITY_TOLERANCE:
            raise ExportError(f"ONNX Runtime and PyTorch disagree by {difference:.2e} (> {PARITY_TOLERANCE}); not written")
        os.chmod(temporary, 0o644)
        os.replace(temporary, out)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return difference


def parity(model: torch.nn.Module, onnx_path: str, inputs: np.ndarray) -> float:
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    scores = session.run(None, {session.get_inputs()[0].name: inputs})[0]
    with torch.no_grad():
        reference = torch.softmax(model(torch.from_numpy(inputs)), 1).numpy()
    probs = np.exp(scores - scores.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    return float(np.abs(probs - reference).max())


def export_checkpoint(checkpoint: Path, out: Path, int8: bool = False, tta: str = "none") -> float:
    """Export ``checkpoint`` to ``out``; with ``int8``, the file at ``out`` is the 8-bit model, calibrated on
    training faces of the run's own data; a run folder stands for its best.pt. Returns the float model's largest
    difference from PyTorch."""
    checkpoint = run_checkpoint(checkpoint)
    state = load_checkpoint(checkpoint)
    cfg = state["config"]
    info = model_info(state, tta)
    model = create_model(cfg["arch"], len(info.labels))
    load_model_state(model, state["model"], cfg["arch"], checkpoint)
    if not int8:
        difference = export_model(model, info, out)
        log.info("exported %s -> %s (largest ORT/PyTorch difference %.2e)", checkpoint, out, difference)
        return difference
    from fer_emotion.training.datasets import load_splits
    from fer_emotion.training.quantize import quantize_onnx

    splits = load_splits([Path(p) for p in cfg["data"]], cfg["labels"], Path(cfg["ferplus"]) if cfg.get("ferplus") else None,
                         cfg.get("label_map"))
    rng = np.random.default_rng(0)
    train = splits["train"].images.numpy()
    calibration = train[rng.choice(len(train), min(1024, len(train)), replace=False)]
    check = splits["val"].images.numpy()[:2000]
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        float_path = Path(scratch) / "float.onnx"
        difference = export_model(model, info, float_path)
        quality = quantize_onnx(float_path, out, calibration, info, check)
    log.info("exported %s -> %s as int8: top class agrees with float on %.2f%% of %d validation faces, "
             "largest probability difference %.3f", checkpoint, out, 100 * quality["agreement"], len(check),
             quality["max_prob_difference"])
    return difference
