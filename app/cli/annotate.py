"""``fer-annotate``: write an annotated copy (and optionally JSON) of images, folders and videos."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
from tqdm import tqdm

from fer_emotion.app.core.drawing import MODES
from fer_emotion.app.core.outputs import image_document, save_image, write_json
from fer_emotion.app.core.pipeline import Pipeline, PipelineConfig
from fer_emotion.app.core.sources import SourceError, VideoSource, kind_of, read_image

log = logging.getLogger(__name__)
WRITABLE_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fer-annotate",
        description="Draw an emoji or a label over every face in images, folders of images and videos.",
        epilog="Animated GIFs are read as their first frame. Outputs never replace an existing file.",
    )
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="image, video or folder")
    parser.add_argument("--out", type=Path, default=Path("annotated"), help="output folder (default: ./annotated)")
    parser.add_argument("--mode", choices=MODES, default="emoji", help="emoji over faces, or box + label")
    parser.add_argument("--model", type=Path,
                        help="an .onnx model with fer metadata, or a shipped model's file name "
                             "(default: the shipped one)")
    parser.add_argument("--json", action="store_true", help="also write a JSON file of the faces per input")
    parser.add_argument("--whole-image", action="store_true",
                        help="classify a picture without a detected face as one face (for face crops)")
    parser.add_argument("--detect-every", type=int, default=1,
                        help="videos: full face detection every K frames, tracking in between (default 1)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    return parser


@dataclass(frozen=True)
class Job:
    path: Path
    kind: str  # "image" or "video"


def expand_inputs(inputs: list[Path]) -> tuple[list[Job], list[str]]:
    """Files to annotate (folders expanded, sorted) and one error line per input that cannot be."""
    jobs, errors = [], []
    for path in inputs:
        if path.is_dir():
            found = [Job(f, kind_of(f)) for f in sorted(path.rglob("*")) if f.is_file() and kind_of(f)]
            if not found:
                errors.append(f"{path}: no images or videos in this folder")
            jobs.extend(found)
        elif not path.exists():
            errors.append(f"{path}: no such file or folder")
        else:
            jobs.append(Job(path, kind_of(path) or "image"))  # an unknown suffix is tried as an image
    return jobs, errors


class OutputNames:
    """Unique output paths: never an input, never an existing file, never one name twice in a run."""

    def __init__(self, out_dir: Path, inputs: list[Path]) -> None:
        self.out_dir = out_dir
        self._taken = {p.resolve() for p in inputs}

    def claim(self, stem: str, suffixes: tuple[str, ...]) -> tuple[Path, ...]:
        """Paths ``stem{suffix}`` for every suffix, all free, sharing one base name."""
        for attempt in range(10_000):
            base = stem if attempt == 0 else f"{stem}-{attempt + 1}"
            paths = tuple(self.out_dir / f"{base}{suffix}" for suffix in suffixes)
            if all(not p.exists() and p.resolve() not in self._taken for p in paths):
                self._taken.update(p.resolve() for p in paths)
                return paths
        raise RuntimeError(f"no free output name for {stem} in {self.out_dir}")


def image_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    return suffix if suffix in WRITABLE_IMAGE_SUFFIXES else ".png"


def annotate_image(job: Job, pipeline: Pipeline, names: OutputNames, want_json: bool) -> Path:
    image = read_image(job.path)
    pipeline.reset()
    result = pipeline.process(image)
    suffixes = (f"_annotated{image_suffix(job.path)}",) + ((".json",) if want_json else ())
    outputs = names.claim(job.path.stem, suffixes)
    save_image(outputs[0], result.image)
    if want_json:
        write_json(outputs[1], image_document(str(job.path), outputs[0], result, pipeline.classifier.path.name,
                                              pipeline.labels))
    return outputs[0]


def annotate_video(job: Job, pipeline: Pipeline, names: OutputNames, want_json: bool, progress: bool) -> Path:
    pipeline.reset()
    with VideoSource(job.path) as source:
        outputs = names.claim(job.path.stem, ("_annotated.mp4",) + ((".json",) if want_json else ()))
        writer = cv2.VideoWriter(str(outputs[0]), cv2.VideoWriter_fourcc(*"mp4v"), source.fps, source.size)
        if not writer.isOpened():
            raise SourceError(f"{outputs[0]}: cannot write video")
        frames = []
        try:
            bar = tqdm(source, total=source.frame_count or None, desc=job.path.name, unit="frame",
                       disable=not progress, leave=False)
            for frame in bar:
                result = pipeline.process(frame.image, frame.index, frame.timestamp, frame.decode_ms)
                writer.write(cv2.cvtColor(result.image, cv2.COLOR_RGB2BGR))
                frames.append({"index": frame.index, "time": round(frame.timestamp, 3),
                               "faces": [face.to_json() for face in result.faces]})
        finally:
            writer.release()
    if want_json:
        document = {"input": str(job.path), "output": str(outputs[0]), "fps": source.fps,
                    "width": source.size[0], "height": source.size[1], "model": pipeline.classifier.path.name,
                    "labels": list(pipeline.labels), "frames": frames}
        outputs[1].write_text(json.dumps(document) + "\n")
    return outputs[0]


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    jobs, errors = expand_inputs(args.inputs)
    for line in errors:
        print(f"fer-annotate: {line}", file=sys.stderr)
    if not jobs:
        return 1
    from fer_emotion.app.core.classifier import ModelLoadError
    from fer_emotion.app.core.factory import build_pipeline

    config = PipelineConfig(mode=args.mode, detect_every=args.detect_every, whole_image=args.whole_image)
    try:
        pipeline = build_pipeline(args.model, config, device=args.device)
    except ModelLoadError as err:
        print(f"fer-annotate: {err}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    names = OutputNames(args.out, [job.path for job in jobs])
    interactive = sys.stderr.isatty()
    failures = len(errors)
    for job in tqdm(jobs, desc="files", unit="file", disable=not interactive or len(jobs) < 3):
        try:
            if job.kind == "video":
                written = annotate_video(job, pipeline, names, args.json, interactive)
            else:
                written = annotate_image(job, pipeline, names, args.json)
            print(f"{job.path} -> {written}")
        except SourceError as err:
            failures += 1
            print(f"fer-annotate: {err}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
