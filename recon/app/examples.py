"""Example pictures for the "Try it" tab: a few test images of a dataset, written as the PNGs
``recon.data.image_io.dataset_image_to_rgba`` makes (they read back as exactly the tensors the model
was evaluated on), or, without a dataset, the built-in ones in ``assets/app_examples/``: test objects
of the embedded synthetic dataset rendered by ``render_builtin_examples`` (``scripts/app_examples.py``
wrote them; rendering them at start-up would take seconds).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from recon.data.image_io import dataset_image_to_rgba
from recon.data.schema import validate

__all__ = ["BUILTIN_DIR", "EXAMPLE_VIEW", "dataset_examples", "builtin_examples", "render_builtin_examples"]

BUILTIN_DIR = Path(__file__).resolve().parent.parent.parent / "assets" / "app_examples"
EXAMPLE_VIEW = 2  # azimuth -30 degrees: the objects turned a little towards the camera


def dataset_examples(data: str | os.PathLike, out_dir: str | os.PathLike, split: str = "test",
                     per_category: int = 1, limit: int = 6) -> list[Path]:
    """Write view ``EXAMPLE_VIEW`` of the first ``per_category`` objects of each category of ``split``
    (at most ``limit`` images; another split when the file has no ``split``) as PNGs; their paths.

    Raises:
        DatasetFormatError: ``data`` is not a valid dataset.
    """
    info = validate(data)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = info.objects(split) if any(s.split == split for s in info.splits) else {}
    if not any(counts.values()):
        split = next((s for s in ("test", "val", "train") if any(info.objects(s).values())), split)
        counts = info.objects(split)
    paths = []
    with h5py.File(data, "r") as f:
        for key, name in info.categories.items():
            for i in range(min(per_category, counts.get(key, 0))):
                if len(paths) >= limit:
                    return paths
                oid = f[key][split]["object_ids"][i]
                oid = oid.decode() if isinstance(oid, bytes) else str(oid)
                path = out / f"{name}_{oid}_view{EXAMPLE_VIEW:02d}.png"
                Image.fromarray(dataset_image_to_rgba(f[key][split]["images"][i, EXAMPLE_VIEW]), "RGBA").save(path)
                paths.append(path)
    return paths


def builtin_examples() -> list[Path]:
    """The shipped example pictures (sorted)."""
    return sorted(BUILTIN_DIR.glob("*.png"))


def render_builtin_examples(out_dir: str | os.PathLike = BUILTIN_DIR, per_category: int = 1,
                            categories: tuple[str, ...] = ("03001627", "04379243", "02691156", "02958343",
                                                           "03636649", "02828884")) -> list[Path]:
    """Render test objects of the embedded synthetic dataset (seed 0, view ``EXAMPLE_VIEW``) exactly
    as ``pipelines.convert synthetic`` stores them, as PNGs named after the object ids."""
    from recon.data.synthetic import CATEGORIES
    from recon.data.synthetic.build import SPLIT_OFFSET
    from recon.data.synthetic.objects import render_object

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for key in categories:
        for i in range(per_category):
            images, _ = render_object(key, SPLIT_OFFSET["test"] + i)
            path = out / f"{CATEGORIES[key]}-test-{i:05d}.png"  # the object id in a built file
            Image.fromarray(dataset_image_to_rgba(np.asarray(images[EXAMPLE_VIEW])), "RGBA").save(path)
            paths.append(path)
    return paths
