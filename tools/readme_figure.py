"""The README's picture: input images -> the meshes a trained model predicts from them.

    python -m tools.readme_figure --checkpoint runs/demo --data data/synthetic.h5   # -> docs/images/reconstruction.png

One column per category: the first object of the split (``--index``; not selected for looking good)
at one view (``--view``), then the predicted mesh seen from that view and from 90 degrees further
round. The title names the checkpoint's step; regenerate the picture after the demo's model
changes.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
import torch

from recon.data.dataset import iter_objects
from recon.data.schema import validate
from recon.io import atomic_write_bytes
from recon.report.figures import render_mesh_rgb
from recon.runs import load_model, resolve_checkpoint
from recon.runtime import flush_denormals

__all__ = ["OUT", "figure", "main"]

OUT = Path(__file__).resolve().parent.parent / "docs" / "images" / "reconstruction.png"
_SIZE = 128  # pixels of each tile
_TURN = 6  # views (15 degrees each) between the two renders of a prediction


def _input_rgb(image: torch.Tensor, size: int) -> np.ndarray:
    """(4, S, S) premultiplied RGBA in [0, 1] -> (size, size, 3) uint8 on white, nearest-neighbour upscaled."""
    x = image.detach().cpu().numpy()
    rgb = (x[:3] + (1 - x[3:4])).transpose(1, 2, 0)
    rep = max(size // rgb.shape[0], 1)
    return (np.repeat(np.repeat(rgb, rep, 0), rep, 1) * 255).round().clip(0, 255).astype(np.uint8)


def figure(checkpoint: str, data: str, split: str = "test", view: int = 3, index: int = 0) -> tuple[bytes, str]:
    """The PNG bytes of the picture and a one-line description of what it shows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    info = validate(data, require_splits=(split,))  # the arguments first, before the model loads
    if not 0 <= view < info.num_views:
        raise ValueError(f"--view {view}: {data} has views 0-{info.num_views - 1}")
    if not any(n > index >= 0 for n in info.objects(split).values()):
        raise ValueError(f"{data}: no category has an object {index} in split {split!r}")
    flush_denormals()
    path = resolve_checkpoint(checkpoint)
    model, state = load_model(path)
    columns = []
    for rec in iter_objects(data, split, max_per_category=index + 1):
        if rec.index != index:
            continue
        with torch.no_grad():
            verts = model(rec.images[view][None])[0]
        second = (view + _TURN) % rec.images.shape[0]
        renders = render_mesh_rgb(verts, model.faces, views=(view, second), image_size=_SIZE)
        columns.append((rec.name, _input_rgb(rec.images[view], _SIZE), renders[0], renders[1]))
    heads = ("input image", "predicted mesh,\nsame view", "predicted mesh,\nturned 90°")
    fig, axes = plt.subplots(3, len(columns), figsize=(1.6 * len(columns) + 0.9, 5.0), squeeze=False)
    for c, (name, *tiles) in enumerate(columns):
        for r, tile in enumerate(tiles):
            ax = axes[r, c]
            ax.imshow(tile)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=10)
            if c == 0:
                ax.set_ylabel(heads[r], fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    what = (f"{path} (step {state.get('step', '?')}), {split} object {index} of each category of {data}, "
            f"view {view}")
    return buf.getvalue(), what


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.readme_figure", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="runs/demo", help="run directory (its best.pt) or checkpoint file")
    p.add_argument("--data", default="data/synthetic.h5", help="dataset the input images come from")
    p.add_argument("--split", default="test", help="split of the input images (default: test)")
    p.add_argument("--view", type=int, default=3, help="view of the input images (default: 3)")
    p.add_argument("--index", type=int, default=0, help="object of each category (default: 0, the first)")
    p.add_argument("--out", default=str(OUT), help="PNG to write (default: docs/images/reconstruction.png)")
    args = p.parse_args(argv)
    png, what = figure(args.checkpoint, args.data, args.split, args.view, args.index)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out, png)
    print(f"wrote {args.out}: {what}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
