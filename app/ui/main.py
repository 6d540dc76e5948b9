"""``fer-app``: the desktop app."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()


def since_launch() -> float:
    """Seconds since this process was created (Linux: from /proc, so interpreter start-up counts too);
    elsewhere, since this module was imported."""
    import os

    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22 of proc(5): start time since boot
        return float(Path("/proc/uptime").read_text().split()[0]) - started
    except (OSError, ValueError, IndexError):
        return time.perf_counter() - STARTED


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fer-app", description="Live webcam with an emoji or a label over every face.")
    parser.add_argument("--source", help="camera index or a video/image file (default: the last camera used)")
    parser.add_argument("--loop", action="store_true", help="play a video file again and again")
    parser.add_argument("--model", type=Path,
                        help="an .onnx model with fer metadata, or a shipped model's file name "
                             "(default: the shipped one)")
    parser.add_argument("--mode", choices=("emoji", "label"), help="overlay (default: the last one used)")
    parser.add_argument("--exit-after", type=float, metavar="SECONDS", help="quit after this many seconds")
    parser.add_argument("--screenshot", type=Path, metavar="OUT.png", help="with --exit-after: save the window first")
    parser.add_argument("--report-startup", action="store_true",
                        help="print when the window became visible and when the first annotated frame arrived")
    parser.add_argument("--version", action="store_true", help="print the version and the devices in use, then quit")
    return parser


def print_version() -> int:
    from fer_emotion.app import __version__
    from fer_emotion.app.core.classifier import choose_providers

    provider = choose_providers()[0]
    device = "CUDA" if provider.startswith("CUDA") else "CPU"
    print(f"fer-app {__version__}; face detection and classification on {device} (onnxruntime {provider})")
    return 0


def no_display() -> str | None:
    """Why a window cannot open here, or None: on Linux Qt needs an X11 or Wayland display (or a platform named in
    QT_QPA_PLATFORM); without one it aborts with lines about missing plugins that do not say so."""
    import os

    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return ("no display to open a window on (neither DISPLAY nor WAYLAND_DISPLAY is set): run it in a desktop "
            "session, or over ssh with -X; fer-annotate annotates files without a window")


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    if args.version:
        return print_version()
    if args.model is not None:
        from fer_emotion.app.core.shipped import missing_model, shipped_or_given

        args.model = shipped_or_given(args.model)
        if not args.model.is_file():
            print(f"fer-app: --model {missing_model(args.model)}", file=sys.stderr)
            return 2
    why = no_display()
    if why:
        print(f"fer-app: {why}", file=sys.stderr)
        return 2
    from PySide6.QtWidgets import QApplication

    from fer_emotion.app.ui.window import MainWindow, scripted_exit
    from fer_emotion.app.ui.worker import StreamSpec

    application = QApplication.instance() or QApplication(sys.argv[:1])
    application.setApplicationName("fer-app")
    application.setOrganizationName("fer-emotion")
    spec, files = None, []
    if args.source is not None:
        if args.source.isdigit():
            spec = StreamSpec(camera=int(args.source))
        else:
            path = Path(args.source)
            if not path.exists():
                print(f"fer-app: {path}: no such file", file=sys.stderr)
                return 2
            from fer_emotion.app.core.sources import kind_of

            if kind_of(path) == "video":
                spec = StreamSpec(video=path, loop=args.loop)
            else:
                files = [path]
    window = MainWindow(spec, args.model)
    if args.mode:
        window.set_mode(args.mode)
    if files:
        window.open_paths(files)
    window.show()
    if args.report_startup:
        report_startup(window)
    if args.exit_after is not None:
        scripted_exit(window, args.exit_after, args.screenshot)
    return application.exec()


def report_startup(window) -> None:
    from PySide6.QtCore import QTimer

    def visible() -> None:
        print(f"window visible after {since_launch():.2f} s", flush=True)

    def first_frame() -> None:
        print(f"first annotated frame after {since_launch():.2f} s", flush=True)
        window.worker.result_ready.disconnect(first_frame)
        window.worker.file_done.disconnect(first_frame)

    QTimer.singleShot(0, visible)
    window.worker.result_ready.connect(first_frame)
    window.worker.file_done.connect(first_frame)


if __name__ == "__main__":
    sys.exit(main())
