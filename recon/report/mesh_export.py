"""Mesh files people open elsewhere: binary PLY and glTF 2.0 binary (.glb), both with per-vertex
colours. Every file is written atomically (``recon.io.atomic_path``).

Colour convention: ``colours`` are RGB in ``[0, 1]`` in the space of the dataset images (sRGB, as
stored in PNG). ``colours=None`` gives a neutral grey. Both files store the *same bytes*: the PLY
as uchar red/green/blue, the GLB as ``COLOR_0`` = VEC4 normalised unsigned bytes (alpha 255), so
every reader that hands out the stored numbers (trimesh, pygltflib, Open3D, plyfile) gives the
.glb's colours equal to the .ply's.

Why no material in the GLB: a primitive with a material makes trimesh return ``TextureVisuals``
with one white colour and hide ``COLOR_0`` in ``vertex_attributes`` (a pipeline built on trimesh
loses the colours silently). Without one, trimesh gives ``ColorVisuals``, and Blender's glTF
importer builds its default Principled BSDF fed by the vertex colours.

A conscious deviation, kept: glTF 2.0 calls ``COLOR_0`` linear. Storing the sRGB bytes (as
trimesh's own exporter does) keeps the numbers equal across readers, at the price that viewers
which apply the linear-to-sRGB display curve (three.js ``GLTFLoader``, Blender) show the colours
somewhat lighter than the .ply; ``srgb_to_linear`` gives the glTF-linear values for such use.
Linear bytes could not keep the numbers within 1/255 of the PLY's (the curve's dark end needs
more than 8 bits). The offline viewer page (``recon.report.viewer``) never reads the GLB: it
inlines the sRGB bytes and converts them itself.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np
import torch

from recon.io import atomic_path

__all__ = ["DEFAULT_GREY", "srgb_to_linear", "vertex_normals", "glb_bytes", "ply_bytes", "save_glb", "save_ply"]

DEFAULT_GREY = (0.7, 0.7, 0.7)  # sRGB colour of a mesh saved without colours

_GLB_MAGIC, _GLB_VERSION = 0x46546C67, 2  # b"glTF", version 2
_CHUNK_JSON, _CHUNK_BIN = 0x4E4F534A, 0x004E4942  # b"JSON", b"BIN\0"
_UBYTE, _FLOAT, _UINT32 = 5121, 5126, 5125  # glTF accessor component types
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963


def _as_numpy(x: torch.Tensor | np.ndarray, dtype: type) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x), dtype=dtype)


def _checked(verts: torch.Tensor | np.ndarray, faces: torch.Tensor | np.ndarray,
             colours: torch.Tensor | np.ndarray | None, path: str | os.PathLike
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(V, 3) float32 verts, (F, 3) uint32 faces, (V, 3) float32 sRGB colours in [0, 1] (grey if None)."""
    v = _as_numpy(verts, np.float32)
    f = _as_numpy(faces, np.int64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"{path}: verts must have shape (V, 3), got {tuple(v.shape)}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"{path}: faces must have shape (F, 3), got {tuple(f.shape)}")
    if not np.isfinite(v).all():
        raise ValueError(f"{path}: verts contain NaN or infinite values")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"{path}: face indices must lie in [0, {len(v)}), got [{f.min()}, {f.max()}]")
    if colours is None:
        c = np.tile(np.asarray(DEFAULT_GREY, np.float32), (len(v), 1))
    else:
        c = _as_numpy(colours, np.float32)
        if c.shape != v.shape:
            raise ValueError(f"{path}: colours must have shape {tuple(v.shape)} like verts, got {tuple(c.shape)}")
        if not np.isfinite(c).all():
            raise ValueError(f"{path}: colours contain NaN or infinite values")
        c = np.clip(c, 0.0, 1.0)
    return v, f.astype(np.uint32), c


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] -> linear RGB in [0, 1] (the IEC 61966-2-1 transfer curve), same shape."""
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals. ``verts: (V, 3)``, ``faces: (F, 3)`` -> (V, 3) float32;
    a vertex on no face (or only degenerate ones) gets ``(0, 1, 0)``."""
    v = verts.astype(np.float64)
    f = faces.astype(np.int64)
    n = np.zeros_like(v)
    if len(f):
        face_n = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])  # length = 2 * area
        for k in range(3):
            np.add.at(n, f[:, k], face_n)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    ok = length[:, 0] > 1e-20
    n[ok] /= length[ok]
    n[~ok] = (0.0, 1.0, 0.0)
    return n.astype(np.float32)


def _srgb_bytes(c: np.ndarray) -> np.ndarray:
    """(V, 3) sRGB in [0, 1] -> (V, 3) uint8, the bytes both the PLY and the GLB store."""
    return np.round(c * 255.0).astype(np.uint8)


def _pad4(data: bytes, fill: bytes) -> bytes:
    return data + fill * (-len(data) % 4)


def glb_bytes(verts: torch.Tensor | np.ndarray, faces: torch.Tensor | np.ndarray,
              colours: torch.Tensor | np.ndarray | None = None, name: str = "mesh",
              where: str | os.PathLike | None = None) -> bytes:
    """A glTF 2.0 binary holding one triangle mesh ``name``: POSITION, NORMAL, COLOR_0 (VEC4 normalised
    unsigned bytes: the sRGB bytes of the PLY, alpha 255) and uint32 indices, no material (see the
    module docstring). Shapes as in ``save_glb``; errors name ``where`` (default ``name``)."""
    v, f, c = _checked(verts, faces, colours, where or name)
    rgba = np.concatenate([_srgb_bytes(c), np.full((len(c), 1), 255, np.uint8)], axis=1)
    arrays = [(f.reshape(-1), _ELEMENT_ARRAY_BUFFER), (v, _ARRAY_BUFFER), (vertex_normals(v, f), _ARRAY_BUFFER),
              (rgba, _ARRAY_BUFFER)]
    blob, views = b"", []
    for arr, target in arrays:  # every element is a multiple of 4 bytes, so each view stays 4-byte aligned
        data = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(data), "target": target})
        blob += data
    accessors = [
        {"bufferView": 0, "componentType": _UINT32, "count": int(f.size), "type": "SCALAR"},
        {"bufferView": 1, "componentType": _FLOAT, "count": len(v), "type": "VEC3",
         "min": (v.min(0) if len(v) else np.zeros(3)).tolist(), "max": (v.max(0) if len(v) else np.zeros(3)).tolist()},
        {"bufferView": 2, "componentType": _FLOAT, "count": len(v), "type": "VEC3"},
        {"bufferView": 3, "componentType": _UBYTE, "normalized": True, "count": len(v), "type": "VEC4"},
    ]
    gltf = {
        "asset": {"version": "2.0", "generator": "recon.report.mesh_export"},
        "scene": 0, "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0, "name": name}],
        "meshes": [{"name": name, "primitives": [{"attributes": {"POSITION": 1, "NORMAL": 2, "COLOR_0": 3},
                                                   "indices": 0, "mode": 4}]}],
        "buffers": [{"byteLength": len(blob)}], "bufferViews": views, "accessors": accessors,
    }
    json_chunk = _pad4(json.dumps(gltf, separators=(",", ":")).encode(), b" ")
    bin_chunk = _pad4(blob, b"\0")
    total = 12 + 8 + len(json_chunk) + 8 + len(bin_chunk)
    return b"".join([struct.pack("<III", _GLB_MAGIC, _GLB_VERSION, total),
                     struct.pack("<II", len(json_chunk), _CHUNK_JSON), json_chunk,
                     struct.pack("<II", len(bin_chunk), _CHUNK_BIN), bin_chunk])


def ply_bytes(verts: torch.Tensor | np.ndarray, faces: torch.Tensor | np.ndarray,
              colours: torch.Tensor | np.ndarray | None = None, where: str | os.PathLike = "mesh") -> bytes:
    """Binary little-endian PLY: float x, y, z and uchar red, green, blue (sRGB) per vertex, and
    ``vertex_indices`` (uchar count, int indices) per face. Shapes as in ``save_ply``; errors name ``where``."""
    v, f, c = _checked(verts, faces, colours, where)
    vertex = np.empty(len(v), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"),
                                     ("red", "u1"), ("green", "u1"), ("blue", "u1")])
    vertex["x"], vertex["y"], vertex["z"] = v.T
    rgb = _srgb_bytes(c)
    vertex["red"], vertex["green"], vertex["blue"] = rgb.T
    face = np.empty(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    face["n"] = 3
    face["i"] = f.astype(np.int32)
    header = ("ply\nformat binary_little_endian 1.0\ncomment written by recon.report.mesh_export\n"
              f"element vertex {len(v)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property uchar red\nproperty uchar green\nproperty uchar blue\n"
              f"element face {len(f)}\nproperty list uchar int vertex_indices\nend_header\n")
    return header.encode("ascii") + vertex.tobytes() + face.tobytes()


def save_glb(path: str | os.PathLike, verts: torch.Tensor | np.ndarray, faces: torch.Tensor | np.ndarray,
             colours: torch.Tensor | np.ndarray | None = None) -> None:
    """Write a mesh as .glb atomically.

    Args:
        verts: (V, 3) float positions.
        faces: (F, 3) integer 0-based vertex indices.
        colours: (V, 3) sRGB in [0, 1] (clipped), or None for ``DEFAULT_GREY``; stored as sRGB bytes.
    Raises:
        ValueError: wrong shapes, non-finite values or out-of-range indices (message names ``path``).
    """
    data = glb_bytes(verts, faces, colours, name=Path(path).stem, where=path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_ply(path: str | os.PathLike, verts: torch.Tensor | np.ndarray, faces: torch.Tensor | np.ndarray,
             colours: torch.Tensor | np.ndarray | None = None) -> None:
    """Write a mesh as binary .ply with per-vertex sRGB bytes atomically. Arguments as ``save_glb``."""
    data = ply_bytes(verts, faces, colours, where=path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
