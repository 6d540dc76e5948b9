"""The metadata a model carries in its ONNX file, and the checks the app makes on it.

A model is one ``.onnx`` file whose ``metadata_props`` describe it (see ``assets/MODEL_METADATA.md``).
Every value is a string; lists and maps are JSON.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

REQUIRED_KEYS = ("labels", "input_size", "grayscale", "mean", "std", "crop_margin", "emoji")
PROVENANCE_KEYS = ("dataset", "arch", "created", "metrics")

FIX_HINT = "re-export it with `fer-train export CHECKPOINT --out model.onnx`, which writes the metadata"


def created_now() -> str:
    """The ``created`` value of a model file written now: UTC, to the second, ISO 8601."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


class ModelMetadataError(ValueError):
    """A model file lacks metadata the app needs, or holds values it cannot use."""


@dataclass(frozen=True)
class ModelInfo:
    """What the app needs to know to feed a model and to show its answers."""

    labels: tuple[str, ...]
    input_size: int = 48
    grayscale: bool = True
    mean: float = 0.5
    std: float = 0.25
    crop_margin: float = 0.0
    emoji: dict[str, str] = field(default_factory=dict)
    dataset: str = ""
    arch: str = ""
    created: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def levels_eyes(self) -> bool:
        """Trained on faces turned so their eyes are level (``align`` = ``eyes``): its crops are turned upright."""
        return self.extra.get("align") == "eyes"

    def to_props(self) -> dict[str, str]:
        """The ONNX ``metadata_props`` that describe this model."""
        props = dict(self.extra)
        props.update(
            labels=json.dumps(list(self.labels)),
            input_size=str(self.input_size),
            grayscale="true" if self.grayscale else "false",
            mean=repr(float(self.mean)),
            std=repr(float(self.std)),
            crop_margin=repr(float(self.crop_margin)),
            emoji=json.dumps(self.emoji, ensure_ascii=False),
            dataset=self.dataset,
            arch=self.arch,
            created=self.created,
            metrics=json.dumps(self.metrics),
        )
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "model") -> ModelInfo:
        """Parse and check ``metadata_props``; raise ModelMetadataError with a fix on failure."""
        missing = [k for k in REQUIRED_KEYS if k not in props]
        if missing:
            raise ModelMetadataError(
                f"{source} has no {', '.join(missing)} metadata: {FIX_HINT}"
            )
        try:
            labels = tuple(str(x) for x in json.loads(props["labels"]))
            emoji = {str(k): str(v) for k, v in json.loads(props["emoji"]).items()}
            metrics = json.loads(props["metrics"]) if props.get("metrics") else {}
            info = cls(
                labels=labels,
                input_size=int(props["input_size"]),
                grayscale=_parse_bool(props["grayscale"]),
                mean=float(props["mean"]),
                std=float(props["std"]),
                crop_margin=float(props["crop_margin"]),
                emoji=emoji,
                dataset=props.get("dataset", ""),
                arch=props.get("arch", ""),
                created=props.get("created", ""),
                metrics=metrics if isinstance(metrics, dict) else {},
                extra={k: v for k, v in props.items() if k not in REQUIRED_KEYS + PROVENANCE_KEYS},
            )
        except (ValueError, TypeError, AttributeError) as err:
            raise ModelMetadataError(f"{source} has unreadable metadata ({err}): {FIX_HINT}") from err
        info.validate(source)
        return info

    def validate(self, source: str = "model") -> None:
        problems = []
        if not self.labels or len(set(self.labels)) != len(self.labels):
            problems.append("labels must be a non-empty list of distinct names")
        if not 8 <= self.input_size <= 512:
            problems.append(f"input_size {self.input_size} is outside 8..512")
        if self.std <= 0:
            problems.append("std must be positive")
        if not 0 <= self.crop_margin <= 1:
            problems.append(f"crop_margin {self.crop_margin} is outside 0..1")
        unknown = set(self.emoji) - set(self.labels)
        if unknown:
            problems.append(f"emoji names labels the model lacks: {sorted(unknown)}")
        if problems:
            raise ModelMetadataError(f"{source}: {'; '.join(problems)}: {FIX_HINT}")


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(f"grayscale must be true or false, not {text!r}")
