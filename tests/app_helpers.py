"""Helpers shared by the app's tests (tests/test_app.py, tests/test_app_browser.py)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import trimesh
from PIL import Image

from recon.data.image_io import dataset_image_to_rgba


def dataset_png(data: str, path: Path, key: str = "03001627", index: int = 0, view: int = 2) -> Path:
    """A test image of ``data`` as the PNG the app's examples are (reads back as the model's input)."""
    with h5py.File(data, "r") as f:
        Image.fromarray(dataset_image_to_rgba(f[key]["test"]["images"][index, view]), "RGBA").save(path)
    return path


def glb_vertices(path: Path) -> np.ndarray:
    """(V, 3) positions of a .glb's one mesh, read by trimesh (an independent reader)."""
    scene = trimesh.load(path, force="scene", process=False)
    (geom,) = scene.geometry.values()
    return np.asarray(geom.vertices)
