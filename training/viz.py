"""``fer-train viz``: first-layer filters and the feature maps of one face, as PNG."""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402


def add_viz_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", type=Path, help="run folder (uses best.pt) or a checkpoint file")
    parser.add_argument("--image", type=Path, required=True, help="a face picture (cropped to the face)")
    parser.add_argument("--out", type=Path, help="folder for filters.png and feature_maps.png (default: the run)")


def grid(images: list[np.ndarray], titles: list[str], out: Path, title: str, columns: int = 8) -> None:
    rows = (len(images) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 1.2, rows * 1.3 + 0.4), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, name in zip(axes.flat, images, titles):
        axis.imshow(image, cmap="gray")
        axis.set_title(name, fontsize=7)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(out, dpi=100)
    plt.close(figure)


def main(args: argparse.Namespace) -> int:
    from fer_emotion.app.core.crop import resize_square, to_gray
    from fer_emotion.app.core.sources import SourceError, read_image
    from fer_emotion.models import create_model
    from fer_emotion.training.augment import normalize
    from fer_emotion.training.checkpoint import load_checkpoint, load_model_state

    checkpoint = args.run / "best.pt" if args.run.is_dir() else args.run
    state = load_checkpoint(checkpoint)
    cfg = state["config"]
    model = create_model(cfg["arch"], len(state["classes"]))
    load_model_state(model, state["model"], cfg["arch"], checkpoint)
    model.eval()
    out = args.out or (args.run if args.run.is_dir() else args.run.parent)
    out.mkdir(parents=True, exist_ok=True)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    weights = convs[0].weight.detach()[:, 0].numpy()
    grid(list(weights), [f"#{i}" for i in range(len(weights))], out / "filters.png",
         f"{cfg['arch']}: first-layer filters")
    try:
        face = resize_square(to_gray(read_image(args.image)), 48)
    except SourceError as err:
        raise SystemExit(f"fer-train viz: {err}") from None
    maps: list[torch.Tensor] = []
    hooks = [conv.register_forward_hook(lambda _m, _i, o: maps.append(o[0].detach())) for conv in convs[:3]]
    with torch.no_grad():
        probs = torch.softmax(model(normalize(torch.from_numpy(face)[None], cfg["mean"], cfg["std"])), 1)[0]
    for hook in hooks:
        hook.remove()
    images = [face.astype(np.float32)] + [m[c].numpy() for m in maps for c in range(min(8, len(m)))]
    titles = ["input"] + [f"conv{i + 1}.{c}" for i, m in enumerate(maps) for c in range(min(8, len(m)))]
    best = int(probs.argmax())
    grid(images, titles, out / "feature_maps.png", f"{args.image.name}: {state['classes'][best]} {float(probs[best]):.0%}",
         columns=9)
    print(f"wrote {out / 'filters.png'} and {out / 'feature_maps.png'}")
    return 0
