"""``fer-bench``: the pipeline over a video without display; per-stage and end-to-end speed."""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from fer_emotion.app.core.classifier import threads_text
from fer_emotion.app.core.detector import DetectorConfig, clip_box
from fer_emotion.app.core.pipeline import STAGES, PipelineConfig
from fer_emotion.app.core.sources import SourceError, VideoSource
from fer_emotion.app.core.tracker import iou


REFERENCE_CACHE = Path.home() / ".cache" / "fer-emotion" / "reference"  # --check-recall's reference boxes


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fer-bench", description="Run the pipeline over a video without display and report its speed.")
    parser.add_argument("video", nargs="?", type=Path,
                        help="video file (default: a clip made from scikit-image's astronaut)")
    parser.add_argument("--frames", type=int, default=0, help="stop after N frames (default: the whole video)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--check-recall", action="store_true",
                        help="also run facenet-pytorch's MTCNN on every whole frame and report box recall at "
                             "IoU >= 0.5 (its boxes for a video file are cached in ~/.cache/fer-emotion/reference)")
    parser.add_argument("--model", type=Path,
                        help="an .onnx model, or a shipped model's file name (default: the shipped one)")
    parser.add_argument("--mode", choices=("emoji", "label"), default="emoji")
    parser.add_argument("--detect-every", type=int, default=5,
                        help="full detection every K frames, O-Net refinement between (default 5; 1 = every frame)")
    parser.add_argument("--background", action="store_true",
                        help="full detection in a second thread, started every K frames at most (--detect-every K; "
                             "1: as often as it finishes)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for detection (default: 2, as the app uses)")
    parser.add_argument("--classifier-threads", type=int,
                        help="CPU threads for classification (default: one, or two for a heavy model, as the app "
                             "chooses)")
    parser.add_argument("--detector-backend", choices=("onnx", "torch"), default="onnx",
                        help="run MTCNN's networks in onnxruntime (default, as the app does) or in torch")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--realtime", action="store_true",
                        help="feed frames at the video's own rate, as a camera does, dropping frames that are late "
                             "(the app keeps only the newest); reports the share of time spent processing")
    return parser


def astronaut_clip(path: Path, frames: int = 90) -> Path:
    """A 640x360 clip of the astronaut photo panning slowly: a face that moves, from a shipped image."""
    from skimage import data

    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 360))
    canvas = np.full((360 + 512, 640 + 512, 3), 40, np.uint8)
    for index in range(frames):
        shift = int(60 * np.sin(index / frames * 2 * np.pi))
        frame = canvas.copy()
        frame[100:612, 300 + shift:812 + shift] = photo
        writer.write(np.ascontiguousarray(frame[150:510, 250:890]))
    writer.release()
    return path


def recall(found: list, reference: list, threshold: float = 0.5) -> tuple[int, int]:
    """(reference faces matched by a found box at IoU >= threshold, reference faces)."""
    matched, used = 0, set()
    for ref in reference:
        best = max(((iou(ref, box), i) for i, box in enumerate(found) if i not in used), default=(0.0, -1))
        if best[0] >= threshold:
            matched += 1
            used.add(best[1])
    return matched, len(reference)


def summarise(samples: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    return {stage: {"median_ms": round(float(np.median(v)), 3), "p95_ms": round(float(np.percentile(v, 95)), 3)}
            for stage, v in samples.items() if v}


def run(args: argparse.Namespace, video: Path) -> dict:
    from fer_emotion.app.core.factory import build_pipeline

    config = PipelineConfig(mode=args.mode, detect_every=args.detect_every, background_detection=args.background)
    detector = DetectorConfig(threads=args.threads, backend=args.detector_backend)
    pipeline = build_pipeline(args.model, config, detector, device=args.device,
                              classifier_threads=args.classifier_threads)
    samples: dict[str, list[float]] = {stage: [] for stage in STAGES + ("total",)}
    faces, classify_per_face, found, frames, dropped = [], [], [], 0, 0
    with VideoSource(video) as source:
        size = source.size
        wall = 0.0
        stream = iter(source)
        opened = time.perf_counter()
        while not args.frames or frames + dropped < args.frames:
            started = time.perf_counter()
            frame = next(stream, None)
            if frame is None:
                break
            if args.realtime:
                late = started - opened - frame.timestamp
                if late > 1 / source.fps:  # a camera would have delivered a newer frame by now
                    dropped += 1
                    found.append(None)
                    continue
                time.sleep(max(0.0, -late))
                started = time.perf_counter()
            result = pipeline.process(frame.image, frame.index, frame.timestamp, frame.decode_ms)
            elapsed = time.perf_counter() - started
            wall += elapsed
            frames += 1
            for stage in STAGES:
                samples[stage].append(result.timings[stage])
            samples["total"].append(elapsed * 1000)
            faces.append(len(result.faces))
            found.append([f.box for f in result.faces])
            if result.faces:
                classify_per_face.append(result.timings["classify"] / len(result.faces))
    pipeline.close()
    if frames == 0:
        raise SourceError(f"{video}: no frames")
    elapsed_all = time.perf_counter() - opened
    report = {
        "video": str(video), "size": list(size), "frames": frames,
        "detect_every": f"background, every {args.detect_every}" if args.background else args.detect_every,
        "fps": round(frames / wall, 2), "stages": summarise(samples),
        "classify_ms_per_face": round(float(np.median(classify_per_face)), 4) if classify_per_face else None,
        "faces_per_frame": round(float(np.mean(faces)), 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "detector_backend": args.detector_backend, "detector_threads": pipeline.detector.config.threads,
        "detector_device": pipeline.detector.device.upper(), "classifier_device": pipeline.classifier.device,
        "classifier_kernels": pipeline.classifier.kernels, "classifier_threads": pipeline.classifier.threads,
    }
    if args.realtime:
        report.update(realtime=True, frames_dropped=dropped, busy=round(wall / elapsed_all, 3))
    if args.check_recall:
        report["recall"], report["reference_faces"] = reference_recall(
            video, found, pipeline.detector.config, REFERENCE_CACHE if args.video else None)
    return report


def reference_recall(video: Path, found: list[list], config: DetectorConfig,
                     cache: Path | None = None) -> tuple[float | None, int]:
    """Recall of the boxes found per frame (None: a frame dropped by --realtime) against facenet-pytorch's
    own MTCNN on every whole frame (with the detector's probability and size limits), run after the timed
    pass so that it neither counts in the timings nor lends a background detector spare time."""
    matched = expected = 0
    with VideoSource(video) as source:
        for boxes, frame, rows in zip(found, source, reference_boxes(video, config, len(found), cache)):
            if boxes is None:  # dropped by --realtime: not shown, not counted
                continue
            height, width = frame.image.shape[:2]
            reference = [clip_box(row, width, height) for row in rows if row[4] >= config.threshold]
            reference = [box for box in reference if min(box[2] - box[0], box[3] - box[1]) >= config.min_box_size]
            hit, count = recall(boxes, reference)
            matched, expected = matched + hit, expected + count
    return (round(matched / expected, 4) if expected else None), expected


def reference_boxes(video: Path, config: DetectorConfig, frames: int,
                    cache: Path | None = None) -> list[list[list[float]]]:
    """facenet-pytorch MTCNN's rows (x1, y1, x2, y2, p) for the first ``frames`` frames of ``video``;
    with ``cache``, kept there under the video's path, size, date and the settings, since the reference
    takes most of a benchmark's time (0.7 s a 1080p frame)."""
    import hashlib

    from fer_emotion.app.core.mtcnn import facenet_reference

    stat = video.resolve().stat()
    key = (f"{video.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|"
           f"{config.min_face_size}|{config.stage_thresholds}|{config.factor}")
    stored = cache / f"{hashlib.sha1(key.encode()).hexdigest()}.json" if cache else None
    try:
        rows: list = json.loads(stored.read_text()) if stored and stored.is_file() else []
    except (OSError, ValueError):  # an unreadable cache entry is computed again
        rows = []
    if len(rows) < frames:
        from tqdm import tqdm

        detect = facenet_reference(config.min_face_size, config.stage_thresholds, config.factor)
        with VideoSource(video) as source:
            frames_in = tqdm(zip(source, range(frames)), total=frames, desc="reference MTCNN", unit="frame",
                             disable=not sys.stderr.isatty(), leave=False)
            rows = [detect(frame.image).tolist() for frame, _ in frames_in]
        if stored:
            stored.parent.mkdir(parents=True, exist_ok=True)
            stored.write_text(json.dumps(rows))
    return rows[:frames]


def print_table(report: dict) -> None:
    print(f"{report['video']}  {report['size'][0]}x{report['size'][1]}  {report['frames']} frames  "
          f"detect every {report['detect_every']}  detector {report['detector_backend']} {report['detector_device']} "
          f"({report['detector_threads']} threads)  "
          f"classifier {report['classifier_device']}, {report['classifier_kernels']} "
          f"({threads_text(report['classifier_threads'])})")
    print(f"{'stage':10s} {'median ms':>10s} {'p95 ms':>10s}")
    for stage, values in report["stages"].items():
        print(f"{stage:10s} {values['median_ms']:10.2f} {values['p95_ms']:10.2f}")
    print(f"end to end: {report['fps']:.1f} fps; {report['faces_per_frame']:.2f} faces per frame; "
          f"classify {report['classify_ms_per_face']} ms per face; peak RSS {report['peak_rss_mb']:.0f} MB")
    if report.get("realtime"):
        print(f"at the video's own rate: {report['frames_dropped']} frames dropped, "
              f"processing {report['busy']:.0%} of the time")
    if "recall" in report:
        print(f"recall vs facenet-pytorch's MTCNN on whole frames (IoU >= 0.5): {report['recall']} "
              f"of {report['reference_faces']} faces")


def missing_training_extra(args: argparse.Namespace) -> str | None:
    """What this run needs from the [train] extra that is not installed, said in one line; None when nothing."""
    import importlib.util

    wanted = {}
    if args.video is None:
        wanted["the built-in astronaut clip (or give a VIDEO)"] = ["skimage"]
    if args.check_recall or args.detector_backend == "torch":
        wanted["--check-recall and --detector-backend torch"] = ["torch", "facenet_pytorch"]
    for feature, modules in wanted.items():
        missing = [module for module in modules if importlib.util.find_spec(module) is None]
        if missing:
            return (f"{feature} needs {', '.join(missing)}, which the app's install leaves out: "
                    "pip install 'fer-emotion[train]'")
    return None


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    from fer_emotion.app.core.classifier import ModelLoadError

    missing = missing_training_extra(args)
    if missing:
        print(f"fer-bench: {missing}", file=sys.stderr)
        return 1

    try:
        with tempfile.TemporaryDirectory() as scratch:
            video = args.video or astronaut_clip(Path(scratch) / "astronaut.mp4")
            report = run(args, video)
    except (SourceError, ModelLoadError) as err:
        print(f"fer-bench: {err}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
