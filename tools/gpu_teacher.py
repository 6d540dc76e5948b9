"""Train the VGG-style teacher (``vgg13m``, 13.3M parameters) on one GPU in one call of under ten minutes.

Here, once (the packed faces are a copy of the dataset: .gpu/ is kept out of git by .git/info/exclude):

    echo /.gpu/ >> .git/info/exclude
    python tools/pack_faces.py pack ../shared/data/fer2013.npz .gpu/faces.npz

On the GPU machine (the device tool, with carry [".gpu"]; its Python has torch, onnx and onnxruntime, and
nothing can be installed there), the project runs from the checkout without being installed:

    python3 tools/gpu_teacher.py run --minutes 7

That trains for at most ``--minutes`` (the plateau schedule of the published VGG recipes, whose cuts need no
planned length; relit faces, erasing), exports the best epoch as int8 ONNX and leaves in $OUT: the log,
metrics.csv, curves.png, ``vgg13m.onnx`` and the best weights in float16 split into files under 16 MiB
(what the tool brings back). Back here:

    python tools/gpu_teacher.py fetch FILES_AT runs/vgg13m

rebuilds ``runs/vgg13m/best.pt`` (float32 weights), which ``fer-train export``, ``eval``, ``--teacher`` and
``--init`` take like any run's.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PART_BYTES = 15 * 2**20  # the device tool brings back files of up to 16 MiB
TRAIN_OPTIONS = [
    "--arch", "vgg13m", "--epochs", "300", "--batch-size", "256", "--optimizer", "sgd", "--lr", "0.03",
    "--weight-decay", "5e-4", "--schedule", "plateau", "--plateau-patience", "5", "--plateau-factor", "0.5",
    "--label-smoothing", "0.1", "--crop-pad", "4", "--rotate", "10", "--scale", "0.2", "--erase", "0.5",
    "--brightness", "0.3", "--contrast", "0.3", "--amp", "--device", "cuda",
    "--save-every", "20", "--no-progress",
]


def project_env(scratch: Path) -> dict[str, str]:
    """An environment in which ``fer_emotion`` is this checkout, without installing it (the package's root is
    the repository itself, so a link named fer_emotion to it is the whole package)."""
    scratch.mkdir(parents=True, exist_ok=True)
    link = scratch / "fer_emotion"
    if not link.exists():
        link.symlink_to(REPO, target_is_directory=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(scratch), env.get("PYTHONPATH")]))
    return env


def fer_train(args: list[str], env: dict[str, str], log: Path) -> None:
    command = [sys.executable, "-m", "fer_emotion.training.cli", *args]
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(command)}\n")
        handle.flush()
        done = subprocess.run(command, env=env, stdout=handle, stderr=subprocess.STDOUT)
    if done.returncode:
        raise SystemExit(f"gpu_teacher: {' '.join(args[:1])} failed (exit {done.returncode}); see {log}")


def split_weights(run: Path, out: Path) -> list[Path]:
    """best.pt's scored weights in float16 with what loading needs, cut into parts under PART_BYTES."""
    import torch

    state = torch.load(run / "best.pt", map_location="cpu", weights_only=True)
    slim = {key: state[key] for key in ("config", "classes", "epoch", "best_acc", "val")}
    slim["model"] = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    buffer = io.BytesIO()
    torch.save(slim, buffer)
    data = buffer.getvalue()
    parts = []
    for number, start in enumerate(range(0, len(data), PART_BYTES)):
        part = out / f"best_fp16.pt.part{number}"
        part.write_bytes(data[start:start + PART_BYTES])
        parts.append(part)
    return parts


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    out = Path(os.environ.get("OUT") or args.out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(args.scratch)
    env = project_env(scratch)
    data = scratch / "fer2013.npz"
    if not data.exists():
        subprocess.run([sys.executable, str(REPO / "tools" / "pack_faces.py"), "unpack", args.faces, str(data)],
                       check=True)
    run_dir, log = scratch / "vgg13m", out / "train.log"
    minutes = args.minutes - (time.monotonic() - started) / 60
    options = [*TRAIN_OPTIONS, *(["--epochs", str(args.epochs)] if args.epochs else [])]
    fer_train(["train", "--data", str(data), "--out", str(run_dir), "--overwrite", "--seed", str(args.seed),
               "--time-limit", f"{minutes:.2f}", *options, *args.extra], env, log)
    fer_train(["export", str(run_dir), "--out", str(out / "vgg13m.onnx"), "--int8", "--overwrite"], env, log)
    for name in ("metrics.csv", "curves.png"):
        if (run_dir / name).exists():
            (out / name).write_bytes((run_dir / name).read_bytes())
    parts = split_weights(run_dir, out)
    print(f"gpu_teacher: {len(parts)} weight parts, vgg13m.onnx, train.log in {out} "
          f"after {(time.monotonic() - started) / 60:.1f} min")
    return 0


def fetch(args: argparse.Namespace) -> int:
    """Join the weight parts into a run folder's best.pt, the weights back in float32."""
    import torch

    source, run_dir = Path(args.files_at), Path(args.run)
    parts = sorted(source.glob("best_fp16.pt.part*"), key=lambda p: int(p.name.rsplit("part", 1)[1]))
    if not parts:
        raise SystemExit(f"gpu_teacher: no best_fp16.pt.part* in {source}")
    state = torch.load(io.BytesIO(b"".join(p.read_bytes() for p in parts)), map_location="cpu", weights_only=True)
    state["model"] = {k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()}
    run_dir.mkdir(parents=True, exist_ok=True)
    if (run_dir / "best.pt").exists():
        raise SystemExit(f"gpu_teacher: {run_dir / 'best.pt'} exists; choose another folder")
    torch.save(state, run_dir / "best.pt")
    for name in ("metrics.csv", "curves.png", "train.log", "vgg13m.onnx"):
        if (source / name).exists():
            (run_dir / name).write_bytes((source / name).read_bytes())
    print(f"{run_dir / 'best.pt'}: epoch {state['epoch']}, val_acc {state['val']['val_acc']:.4f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    on_gpu = commands.add_parser("run", help="train, export and pack the results (on the GPU machine)")
    on_gpu.add_argument("--minutes", type=float, default=7.0, help="for unpacking and training together")
    on_gpu.add_argument("--faces", default=str(REPO / ".gpu" / "faces.npz"), help="pack_faces.py's output")
    on_gpu.add_argument("--scratch", default="/tmp/gpu_teacher", help="data and run folder")
    on_gpu.add_argument("--out", default="/tmp/gpu_teacher/out", help="results, when $OUT is not set")
    on_gpu.add_argument("--seed", type=int, default=1)
    on_gpu.add_argument("--epochs", type=int, default=0, help="in place of the recipe's 300 (a smoke run)")
    on_gpu.add_argument("extra", nargs="*", help="more fer-train train options, after --")
    back = commands.add_parser("fetch", help="rebuild best.pt from the parts brought back (here)")
    back.add_argument("files_at", help="the folder the device tool put the files in")
    back.add_argument("run", help="a new run folder for best.pt and the rest")
    args = parser.parse_args(argv)
    return run(args) if args.command == "run" else fetch(args)


if __name__ == "__main__":
    sys.exit(main())
