"""FER2013's labelled faces in a file small enough for the device tool's 64 MiB working tree, and back.

    python tools/pack_faces.py pack ../shared/data/fer2013.npz .gpu/faces.npz
    python tools/pack_faces.py unpack .gpu/faces.npz /tmp/fer2013.npz

`pack` keeps the Training and PublicTest rows (PrivateTest's labels are withheld anyway) and stores their
pixels as lossless WebP mosaics: 74 MB of pixels in about 52 MB, where the dataset's own zip holds them in 70.
`unpack` writes them back as a `fer2013.npz` that `fer-train` reads, pixel for pixel the same. The packed file is
a copy of the dataset: keep it out of the repository (tools/gpu_teacher.py's .gpu/ folder, which its docstring
keeps out of git with .git/info/exclude).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

TILE = 64  # faces a side of one mosaic: 3072 px, inside WebP's 16383 px limit
LOSSLESS = [cv2.IMWRITE_WEBP_QUALITY, 101]  # above 100: lossless


def mosaic(faces: np.ndarray) -> np.ndarray:
    """Up to TILE * TILE faces (N, S, S) as one image, row by row, the unused places black."""
    count, size = len(faces), faces.shape[1]
    padded = np.zeros((TILE * TILE, size, size), np.uint8)
    padded[:count] = faces
    return padded.reshape(TILE, TILE, size, size).transpose(0, 2, 1, 3).reshape(TILE * size, TILE * size)


def faces_of(image: np.ndarray, count: int, size: int) -> np.ndarray:
    return image.reshape(TILE, size, TILE, size).transpose(0, 2, 1, 3).reshape(TILE * TILE, size, size)[:count]


def pack(source: Path, dest: Path) -> None:
    data = np.load(source)
    keep = data["usage"] < 2
    pixels = data["pixels"][keep]
    arrays = {"emotion": data["emotion"][keep], "usage": data["usage"][keep], "flags": data["flags"][keep],
              "size": np.array(pixels.shape[1])}
    per_tile = TILE * TILE
    for number, start in enumerate(range(0, len(pixels), per_tile)):
        ok, encoded = cv2.imencode(".webp", mosaic(pixels[start:start + per_tile]), LOSSLESS)
        if not ok:
            raise SystemExit("pack_faces: OpenCV could not write WebP")
        arrays[f"tile{number:03d}"] = encoded.ravel()
    dest.parent.mkdir(parents=True, exist_ok=True)
    np.savez(dest, **arrays)
    if not np.array_equal(read_packed(dest)["pixels"], pixels):
        raise SystemExit(f"pack_faces: {dest} does not give the faces back")
    print(f"{dest}: {keep.sum()} faces, {dest.stat().st_size / 1e6:.1f} MB")


def read_packed(path: Path) -> dict[str, np.ndarray]:
    packed = np.load(path)
    count = len(packed["emotion"])
    tiles = sorted(name for name in packed.files if name.startswith("tile"))
    size = int(packed["size"])
    faces = []
    for number, name in enumerate(tiles):
        image = cv2.imdecode(packed[name], cv2.IMREAD_GRAYSCALE)
        faces.append(faces_of(image, min(TILE * TILE, count - number * TILE * TILE), size))
    return {"pixels": np.concatenate(faces), "emotion": packed["emotion"], "usage": packed["usage"],
            "flags": packed["flags"]}


def unpack(source: Path, dest: Path) -> None:
    arrays = read_packed(source)
    dest.parent.mkdir(parents=True, exist_ok=True)
    np.savez(dest, **arrays)
    print(f"{dest}: {len(arrays['pixels'])} faces")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("pack", "unpack"))
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    args = parser.parse_args(argv)
    if args.dest.exists():
        raise SystemExit(f"pack_faces: {args.dest} exists; remove it first")
    (pack if args.action == "pack" else unpack)(args.source, args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
