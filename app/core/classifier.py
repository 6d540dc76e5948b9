"""Emotion classification, and the only module that touches onnxruntime (``open_session`` also serves
the detector's MTCNN networks)."""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import platform
import time
from pathlib import Path

import numpy as np

from fer_emotion.app.core.crop import normalize
from fer_emotion.app.core.metadata import ModelInfo, ModelMetadataError
from fer_emotion.app.core.qdq import signed_weights
from fer_emotion.app.core.shipped import missing_model

log = logging.getLogger(__name__)


# Mean absolute difference in probability on the probe faces above which the fused int8 kernels are not
# trusted. On an AVX2-only CPU: 0.006-0.024 for the shipped models with all-int8 weights, at most 3e-4 for
# the same models with their first two layers in uint8, or (as shipped) the first in float and the second in
# uint8; 0 for a float model.
INT8_TOLERANCE = 1e-3


# How an int8 model's layers run here (EmotionClassifier.kernels; "float" for a float model)
SIGNED, STORED, UNFUSED = "int8 (signed weights)", "int8 (as stored)", "unfused (float on int8 weights)"

# The int8 check's verdicts, by file, CPU, provider and onnxruntime version (None: check at every load)
KERNELS_CACHE: Path | None = Path.home() / ".cache" / "fer-emotion" / "int8_kernels.json"


class ModelLoadError(RuntimeError):
    """A model file that cannot be opened, or that lacks the metadata the app needs."""


@functools.lru_cache(maxsize=1)
def cuda_status() -> tuple[bool, str]:
    """Whether onnxruntime can be asked for CUDA here, and if not, why (one line for the user)."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False, "this onnxruntime has no CUDA provider (onnxruntime-gpu has it)"
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) == "":
        return False, "CUDA_VISIBLE_DEVICES is empty"
    if cuda_device_count() == 0:
        return False, "no NVIDIA GPU or driver was found"
    if hasattr(ort, "preload_dlls"):  # CUDA and cuDNN from NVIDIA's pip packages (or torch's), where installed
        try:
            ort.preload_dlls()
        except Exception as err:  # a missing library is reported when the session falls back, below
            log.debug("onnxruntime.preload_dlls: %s", err)
    return True, ""


def cuda_usable() -> bool:
    """True when onnxruntime has the CUDA provider and the CUDA driver reports a device."""
    return cuda_status()[0]


_WARNED: set[str] = set()  # what warn_once has said in this process


def warn_once(message: str) -> None:
    """A warning said once per process, however many sessions run into it (MTCNN's three, the classifier)."""
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning(message)


def cuda_device_count() -> int:
    """Devices the CUDA driver sees, asked through its C API (no torch import: it costs seconds)."""
    import ctypes

    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            driver = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    return 0


def choose_providers(device: str = "auto") -> list[str]:
    """CUDA first when it is usable and not turned down (``device`` cpu), else the CPU alone; asked for CUDA
    that is not usable, say why once."""
    if device != "cpu":
        usable, why = cuda_status()
        if usable:
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if device == "cuda":
            warn_once(f"CUDA was asked for, but {why}; running on the CPU")
    return ["CPUExecutionProvider"]


def open_session(path: Path | bytes, device: str = "auto", threads: int = 0, fuse_int8: bool = True):
    """An onnxruntime session on CUDA when usable, else the CPU, with ``threads`` CPU threads (0: its own
    choice) for a model file or its bytes; the one place that opens sessions, for the classifier and for MTCNN's
    networks. ``fuse_int8`` False runs an int8 (QDQ) model's convolutions in float on its dequantised weights
    (see EmotionClassifier._exact_int8_session)."""
    import onnxruntime as ort

    providers = choose_providers(device)
    # onnxruntime's own lines about a CUDA provider that cannot start are errors with a C++ source location;
    # the fallback below says it in one line instead
    ort.set_default_logger_severity(4 if "CUDAExecutionProvider" in providers else 3)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    # Idle pool threads would otherwise spin for a while after each call, on cores that decoding, the other
    # network and the UI need: a 1080p detection on two threads took 320 ms spinning, 230 ms not.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not fuse_int8:
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    try:
        session = ort.InferenceSession(path if isinstance(path, bytes) else str(path), options, providers=providers)
    finally:
        ort.set_default_logger_severity(3)
    if providers[0] not in session.get_providers():
        warn_once("onnxruntime could not start CUDA (the CUDA and cuDNN libraries its onnxruntime-gpu build needs "
                  "are missing, or do not fit the driver); running on the CPU. See the README's GPU section")
    return session


class EmotionClassifier:
    """An ONNX model behind a typed contract: uint8 face crops (N, S, S) in, probabilities (N, C) out."""

    def __init__(self, model_path: Path, device: str = "auto", threads: int = 0) -> None:
        self.path = Path(model_path)
        if not self.path.is_file():
            raise ModelLoadError(missing_model(self.path))
        try:
            data = self.path.read_bytes()
        except OSError as err:
            raise ModelLoadError(f"{self.path}: cannot be read ({err.strerror})") from None
        signed = self._signed_copy(data)
        self._device, self.threads, self._signed = device, threads, signed
        try:
            self._session = open_session(signed or self.path, device, threads)
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            raise ModelLoadError(f"{self.path}: not a readable ONNX model ({str(err).splitlines()[0]})") from None
        props = self._session.get_modelmeta().custom_metadata_map
        try:
            self.info = ModelInfo.from_props(props, source=str(self.path))
        except ModelMetadataError as err:
            raise ModelLoadError(str(err)) from None
        model_input = self._session.get_inputs()[0]
        self._input_name = model_input.name
        self._check_shapes(model_input.shape)
        self.provider = self._session.get_providers()[0]
        self.kernels = "float"  # how its int8 layers run here: see _exact_int8_session
        if signed is not None or self.info.extra.get("precision") == "int8":
            self._session, self.kernels = self._int8_session(data, signed is not None, device, threads)

    def _signed_copy(self, data: bytes) -> bytes | None:
        """The file with its uint8 weights read as int8 (app.core.qdq), or None where it has none."""
        try:
            return signed_weights(data)
        except ValueError as err:  # not protobuf: onnxruntime says what is wrong with the file, next
            log.debug("%s: no copy with int8 weights (%s)", self.path, err)
            return None

    def _int8_session(self, data: bytes, signed: bool, device: str, threads: int):
        """The session _exact_int8_session chooses, and what it is; its verdict is kept in KERNELS_CACHE for
        this file, CPU, provider and onnxruntime version, so that loading the model again skips the check (0.9 of the
        ensemble's 1.1 s on the project's AMD EPYC)."""
        key = verdict_key(data, self.provider)
        kernels = read_verdict(key)
        if kernels not in (SIGNED, STORED, UNFUSED) or (kernels == SIGNED and not signed):
            session, kernels = self._exact_int8_session(signed, device, threads)
            write_verdict(key, kernels)
            return session, kernels
        if kernels == SIGNED or (kernels == STORED and not signed):
            return self._session, kernels
        return self._open(kernels, device, threads), kernels

    def _exact_int8_session(self, signed: bool, device: str, threads: int):
        """The fastest session whose int8 kernels give this model's own results on this CPU, and what it is.

        onnxruntime's fused int8 kernels multiply uint8 activations by int8 weights. On x86 CPUs without VNNI
        (AVX2 only) they add the products in saturating 16-bit pairs: on this project's AMD EPYC the default
        model with all-int8 weights lost 3.4 points of PublicTest (0.6598 against 0.6935) and the FER+ model
        9. Export therefore keeps the layers where it bites off that path (the first in float, the second in
        uint8: training.quantize), and uint8 x uint8 is exact everywhere but slow where VNNI makes uint8 x
        int8 exact (app.core.qdq). So, in turn: the file with those layers' weights made int8 (the same
        numbers; the session already open when ``signed``), the file as it is, and the unfused session (float
        convolutions on the dequantised weights, which is what the int8 model means); the first whose
        probabilities on a fixed set of noise faces match the unfused session's is kept."""
        size = self.info.input_size
        probe = np.random.default_rng(0).integers(0, 256, (16, size, size), dtype=np.uint8)
        batch = normalize(probe, self.info.mean, self.info.std)
        exact = open_session(self.path, "cpu", 1, fuse_int8=False)
        reference = softmax(exact.run(None, {exact.get_inputs()[0].name: batch})[0])

        def agrees(session) -> bool:
            fused = softmax(session.run(None, {self._input_name: batch})[0])
            return float(np.abs(fused - reference).mean()) <= INT8_TOLERANCE

        if agrees(self._session):
            return self._session, SIGNED if signed else STORED
        if signed:
            stored = self._open(STORED, device, threads)
            if agrees(stored):
                return stored, STORED
        log.info("%s: this CPU's fused int8 kernels disagree with the model; running it unfused", self.path)
        return self._open(UNFUSED, device, threads), UNFUSED

    def set_threads(self, threads: int) -> None:
        """Run on ``threads`` CPU threads from now on (0: onnxruntime's choice), with the kernels chosen at load."""
        self._session = self._open(self.kernels, self._device, threads)
        self.threads = threads

    def _open(self, kernels: str, device: str, threads: int):
        """A session that runs this model the way ``kernels`` names: the signed copy or the file, fused or not."""
        source = self._signed if kernels == SIGNED else self.path
        return open_session(source, device, threads, fuse_int8=kernels != UNFUSED)

    def face_ms(self, repeats: int = 5) -> float:
        """Median milliseconds to classify one face here (with its mirror where the model asks for it), after
        two calls that warm the session up."""
        size = self.info.input_size
        face = normalize(np.random.default_rng(1).integers(0, 256, (1, size, size), dtype=np.uint8),
                         self.info.mean, self.info.std)
        times = []
        for index in range(repeats + 2):
            started = time.perf_counter()
            self.normalized(face)
            if index >= 2:
                times.append((time.perf_counter() - started) * 1000)
        return float(np.median(times))

    def _check_shapes(self, shape: list) -> None:
        size = self.info.input_size
        if len(shape) != 4 or shape[1] != 1 or shape[2] != size or shape[3] != size:
            raise ModelLoadError(
                f"{self.path}: input shape {shape} does not match metadata (N, 1, {size}, {size})")
        outputs = self._session.get_outputs()[0].shape
        if len(outputs) != 2 or outputs[1] != len(self.info.labels):
            raise ModelLoadError(f"{self.path}: output shape {outputs} does not match {len(self.info.labels)} labels")

    @property
    def labels(self) -> tuple[str, ...]:
        return self.info.labels

    @property
    def device(self) -> str:
        return "CUDA" if self.provider.startswith("CUDA") else "CPU"

    def __call__(self, crops: np.ndarray) -> np.ndarray:
        """Probabilities for every face of a frame, in one batched call; (0, C) for no faces."""
        if len(crops) == 0:
            return np.empty((0, len(self.labels)), np.float32)
        return self.normalized(normalize(crops, self.info.mean, self.info.std))

    def normalized(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for faces already normalised as the metadata says: float32 (N, 1, S, S)."""
        if self.info.extra.get("tta") == "flip":  # the model asks for mirror averaging: one call, 2N faces
            batch = np.concatenate([batch, batch[:, :, :, ::-1]])
        probs = softmax(self._session.run(None, {self._input_name: np.ascontiguousarray(batch)})[0])
        if self.info.extra.get("tta") == "flip":
            half = len(probs) // 2
            probs = (probs[:half] + probs[half:]) / 2
        return probs


def threads_text(threads: int) -> str:
    """A session's CPU thread count as a person reads it: "1 thread", "2 threads", "onnxruntime's threads" (0)."""
    return {0: "onnxruntime's threads", 1: "1 thread"}.get(threads, f"{threads} threads")


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)


@functools.lru_cache(maxsize=1)
def cpu_identity() -> str:
    """The CPU's make and instruction sets as far as the platform says: what onnxruntime's kernels choose by."""
    fields = {}
    try:  # Linux: x86's model name and flags, or ARM's part and features (one line each per core: the last kept)
        with open("/proc/cpuinfo") as cpuinfo:
            fields = dict(line.split(":", 1) for line in cpuinfo
                          if line.startswith(("model name", "flags", "CPU implementer", "CPU part", "Features")))
    except (OSError, ValueError):
        pass
    platform_line = f"{platform.machine()} {platform.processor()} {platform.platform()}"
    return " ".join(value.strip() for value in fields.values()) or platform_line


def verdict_key(data: bytes, provider: str = "CPUExecutionProvider") -> str:
    """The model file's bytes, this CPU, the provider its session runs on and this onnxruntime, in one line."""
    import onnxruntime as ort

    model = hashlib.blake2b(data, digest_size=16).hexdigest()
    cpu = hashlib.blake2b(cpu_identity().encode(), digest_size=8).hexdigest()
    return f"{model} cpu {cpu} {provider} onnxruntime {ort.__version__}"


def read_verdict(key: str) -> str | None:
    if KERNELS_CACHE is None:
        return None
    try:
        return json.loads(KERNELS_CACHE.read_text()).get(key)
    except (OSError, ValueError, AttributeError):  # none yet, or not ours to read: check again
        return None


def write_verdict(key: str, kernels: str) -> None:
    if KERNELS_CACHE is None:
        return
    try:
        verdicts = json.loads(KERNELS_CACHE.read_text())
        verdicts = verdicts if isinstance(verdicts, dict) else {}
    except (OSError, ValueError):
        verdicts = {}
    verdicts[key] = kernels
    try:
        KERNELS_CACHE.parent.mkdir(parents=True, exist_ok=True)
        scratch = KERNELS_CACHE.with_name(f"{KERNELS_CACHE.name}.{os.getpid()}")
        scratch.write_text(json.dumps(verdicts, indent=1))
        scratch.replace(KERNELS_CACHE)  # whole or not at all, with another app loading beside it
    except OSError as err:  # a read-only home: the check runs at every load, as before
        log.debug("%s: not written (%s)", KERNELS_CACHE, err)
