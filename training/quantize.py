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


def _probabilities(session, inputs: np.ndarray) -> np.ndarray:
    scores = np.concatenate([session.run(None, {"input": inputs[i:i + 256]})[0] for i in range(0, len(inputs), 256)])
    exp = np.exp(scores - scores.max(1, keepdims=True))
    return exp / exp.sum(1, keepdims=True)
