"""Write MTCNN's three networks (facenet-pytorch's weights) as ONNX files for the app's detector.

    .venv/bin/python tools/export_mtcnn.py [--out assets/mtcnn]

The app runs these with onnxruntime, so neither torch nor torchvision is imported to find faces. Each
file is checked against facenet-pytorch's own modules on random input before it is written.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from facenet_pytorch.models.mtcnn import ONet, PNet, RNet

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4

# name: (module, example input side, output names, whether the side is dynamic)
NETS = {
    "pnet": (PNet, 60, ["regression", "probability"], True),
    "rnet": (RNet, 24, ["regression", "probability"], False),
    "onet": (ONet, 48, ["regression", "landmarks", "probability"], False),
}


def export(name: str, out_dir: Path) -> float:
    builder, side, outputs, dynamic_side = NETS[name]
    net = builder().eval()
    example = torch.rand(2, 3, side, side) * 2 - 1
    axes = {"input": {0: "batch", 2: "height", 3: "width"} if dynamic_side else {0: "batch"}}
    axes.update({output: {0: "batch"} for output in outputs})
    if dynamic_side:
        for output in outputs:
            axes[output].update({2: "rows", 3: "columns"})
    with tempfile.TemporaryDirectory() as scratch:
        temporary = Path(scratch) / f"{name}.onnx"
        torch.onnx.export(net, (example,), temporary, input_names=["input"], output_names=outputs,
                          dynamic_axes=axes, opset_version=17, dynamo=False)
        proto = onnx.load(temporary)
        proto.doc_string = f"MTCNN {name} with facenet-pytorch 2.5.3's weights (MIT licence, see LICENSE)"
        final = out_dir / f"{name}.onnx"
        onnx.save(proto, final)
    check = torch.rand(3, 3, side + 13 if dynamic_side else side, side + 7 if dynamic_side else side) * 2 - 1
    with torch.inference_mode():
        expected = [t.numpy() for t in net(check)]
    session = ort.InferenceSession(str(final), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": check.numpy()})
    return max(float(np.abs(a - b).max()) for a, b in zip(expected, got))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "mtcnn")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in NETS:
        difference = export(name, args.out)
        if difference > TOLERANCE:
            raise SystemExit(f"{name}: onnxruntime differs from torch by {difference:.2e}")
        print(f"{args.out / name}.onnx  largest difference from torch {difference:.1e}")


if __name__ == "__main__":
    main()
