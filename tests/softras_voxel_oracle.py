"""Test oracle: ports of SoftRas's 3D-IoU voxelization, written without recon.ops.voxelize.

Sources (github.com/ShichenLiu/SoftRas): ``examples/recon/models.py`` (``evaluate_iou``: the
coordinate map), ``soft_renderer/functional/voxelization.py`` (the driver) and
``soft_renderer/cuda/voxelization_cuda_kernel.cu`` (the four kernels). Two ports:

* ``literal_*``: the kernels loop for loop, one CUDA thread after the other (a legal schedule:
  the flood-fill loop runs until the count of visible cells stops changing, so its result does
  not depend on the schedule), with ``np.float32`` scalars (IEEE float32 without fused
  multiply-adds) and flat int32 arrays indexed as in the CUDA code. Slow: small meshes only.
* ``numpy_*``: the same per-thread arithmetic with all threads of a launch evaluated at once
  (for ``voxelize_sub1`` also all faces at once; the writes are idempotent, so their order does
  not matter). Checked against the literal port in the tests, then used on many meshes.

Both return SoftRas's grid untouched (``evaluate_iou`` later applies
``transpose(0, 2, 1, 3)[..., ::-1]`` to compare with NMR voxels; our data already has the inverse
applied), as int32 0/1 arrays ``(B, R, R, R)``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["evaluate_iou_faces_norm", "literal_voxelization", "numpy_voxelization", "softras_oracle"]


def evaluate_iou_faces_norm(vertices: np.ndarray, faces: np.ndarray, size: int = 32) -> np.ndarray:
    """``faces_norm = srf.face_vertices(vertices, faces) * 1. * (32. - 1) / 32. + 0.5`` in float32
    (``size`` in place of 32).

    Args:
        vertices: (B, V, 3); faces: (F, 3) int.
    Returns:
        (B, F, 3, 3) float32, the input of ``voxelization(faces_norm, size, False)``.
    """
    faces_ = np.asarray(vertices, dtype=np.float32)[:, np.asarray(faces, dtype=np.int64)]
    faces_norm = faces_ * 1. * (size - 1.) / size + 0.5  # Python floats are weak: stays float32
    assert faces_norm.dtype == np.float32
    return faces_norm


# ----------------------------------------------------------------------------------------------
# Literal port (loops)
# ----------------------------------------------------------------------------------------------

def _literal_sub1_kernel(faces: list, voxels: list, batch_size: int, num_faces: int, voxel_size: int) -> None:
    """``voxelize_sub1_kernel``; ``faces`` a flat list of np.float32, ``voxels`` a flat list of ints."""
    nf, vs = num_faces, voxel_size
    for i in range(batch_size * vs * vs):  # one CUDA thread per i
        y = i % vs
        x = (i // vs) % vs
        bn = i // (vs * vs)
        for fn in range(nf):
            face = faces[(bn * nf + fn) * 9:(bn * nf + fn) * 9 + 9]
            y1d = face[3] - face[0]
            x1d = face[4] - face[1]
            z1d = face[5] - face[2]
            y2d = face[6] - face[0]
            x2d = face[7] - face[1]
            z2d = face[8] - face[2]
            ypd = y - face[0]
            xpd = x - face[1]
            det = x1d * y2d - x2d * y1d
            if det == 0:
                continue
            t1 = (y2d * xpd - x2d * ypd) / det
            t2 = (-y1d * xpd + x1d * ypd) / det
            if t1 < 0:
                continue
            if t2 < 0:
                continue
            if 1 < t1 + t2:
                continue
            zi = int(np.floor(t1 * z1d + t2 * z2d + face[2]))
            for yi, xi in ((y, x), (y - 1, x), (y, x - 1), (y - 1, x - 1)):
                if (0 <= yi) and (yi < vs) and (0 <= xi) and (xi < vs) and (0 <= zi) and (zi < vs):
                    voxels[bn * vs * vs * vs + yi * vs * vs + xi * vs + zi] = 1


def _literal_sub2_kernel(faces: list, voxels: list, batch_size: int, num_faces: int, voxel_size: int) -> None:
    """``voxelize_sub2_kernel``."""
    nf, vs = num_faces, voxel_size
    for i in range(batch_size * nf):
        fn = i % nf
        bn = i // nf
        face = faces[(bn * nf + fn) * 9:(bn * nf + fn) * 9 + 9]
        for k in range(3):
            yi = math.floor(face[3 * k + 0])
            xi = math.floor(face[3 * k + 1])
            zi = math.floor(face[3 * k + 2])
            if (0 <= yi) and (yi < vs) and (0 <= xi) and (xi < vs) and (0 <= zi) and (zi < vs):
                voxels[bn * vs * vs * vs + yi * vs * vs + xi * vs + zi] = 1


def _literal_sub3_kernel(voxels: list, visible: list, batch_size: int, voxel_size: int) -> None:
    """``voxelize_sub3_kernel``: empty border cells are visible."""
    vs = voxel_size
    for i in range(batch_size * vs * vs * vs):
        z = i % vs
        x = (i // vs) % vs
        y = (i // (vs * vs)) % vs
        pn = i
        if (y == 0) or (y == vs - 1) or (x == 0) or (x == vs - 1) or (z == 0) or (z == vs - 1):
            if voxels[pn] == 0:
                visible[pn] = 1


def _literal_sub4_kernel(voxels: list, visible: list, batch_size: int, voxel_size: int) -> None:
    """``voxelize_sub4_kernel``: an empty interior cell with a visible 6-neighbour becomes visible."""
    vs = voxel_size
    for i in range(batch_size * vs * vs * vs):
        z = i % vs
        x = (i // vs) % vs
        y = (i // (vs * vs)) % vs
        bn = i // (vs * vs * vs)
        pn = i
        if (y == 0) or (y == vs - 1) or (x == 0) or (x == vs - 1) or (z == 0) or (z == vs - 1):
            continue
        if voxels[pn] == 0 and visible[pn] == 0:
            for yi, xi, zi in ((y - 1, x, z), (y + 1, x, z), (y, x - 1, z), (y, x + 1, z), (y, x, z - 1),
                               (y, x, z + 1)):
                if visible[bn * vs * vs * vs + yi * vs * vs + xi * vs + zi] != 0:
                    visible[pn] = 1


def _literal_voxelize_sub1(faces: np.ndarray, size: int, dim: int) -> np.ndarray:
    bs, nf = faces.shape[:2]
    if dim == 0:
        faces = faces[:, :, :, [2, 1, 0]]
    elif dim == 1:
        faces = faces[:, :, :, [0, 2, 1]]
    voxels = [0] * (bs * size ** 3)
    _literal_sub1_kernel(list(np.ascontiguousarray(faces).ravel()), voxels, bs, nf, size)
    return np.array(voxels, dtype=np.int32).reshape(bs, size, size, size).swapaxes(dim + 1, 3)


def _literal_voxelize_sub2(faces: np.ndarray, size: int) -> np.ndarray:
    bs, nf = faces.shape[:2]
    voxels = [0] * (bs * size ** 3)
    _literal_sub2_kernel(list(np.ascontiguousarray(faces).ravel()), voxels, bs, nf, size)
    return np.array(voxels, dtype=np.int32).reshape(bs, size, size, size)


def _literal_voxelize_sub3(voxels: np.ndarray) -> np.ndarray:
    bs, vs = voxels.shape[:2]
    vox = [int(v) for v in voxels.ravel()]
    visible = [0] * len(vox)
    _literal_sub3_kernel(vox, visible, bs, vs)
    sum_visible = sum(visible)
    while True:
        _literal_sub4_kernel(vox, visible, bs, vs)
        if sum(visible) == sum_visible:
            break
        sum_visible = sum(visible)
    return 1 - np.array(visible, dtype=np.int32).reshape(voxels.shape)


def literal_voxelization(faces: np.ndarray, size: int) -> np.ndarray:
    """``soft_renderer.functional.voxelization(faces, size, normalize=False)`` with literal kernels.

    Args:
        faces: (B, F, 3, 3) float32 ``faces_norm`` (before the ``*= size``).
    Returns:
        (B, R, R, R) int32 0/1.
    """
    faces = faces.copy()
    faces *= np.float32(size)
    with np.errstate(all="ignore"):
        voxels = (_literal_voxelize_sub1(faces, size, 0) + _literal_voxelize_sub1(faces, size, 1)
                  + _literal_voxelize_sub1(faces, size, 2) + _literal_voxelize_sub2(faces, size))
    return _literal_voxelize_sub3((voxels > 0).astype(np.int32))


# ----------------------------------------------------------------------------------------------
# Vectorized port (all threads of a launch at once)
# ----------------------------------------------------------------------------------------------

def _numpy_voxelize_sub1(faces: np.ndarray, size: int, dim: int) -> np.ndarray:
    bs, nf = faces.shape[:2]
    vs = size
    if dim == 0:
        faces = faces[:, :, :, [2, 1, 0]]
    elif dim == 1:
        faces = faces[:, :, :, [0, 2, 1]]
    voxels = np.zeros(bs * vs ** 3, dtype=np.int32)
    i = np.arange(vs * vs)  # the threads of one batch element
    y = i % vs
    x = (i // vs) % vs
    chunk = max(1, (1 << 20) // (vs * vs))
    for bn in range(bs):
        for s in range(0, nf, chunk):
            face = faces[bn, s:s + chunk].reshape(-1, 9)[None]  # (1, f, 9) against threads (T, 1)
            y1d = face[..., 3] - face[..., 0]
            x1d = face[..., 4] - face[..., 1]
            z1d = face[..., 5] - face[..., 2]
            y2d = face[..., 6] - face[..., 0]
            x2d = face[..., 7] - face[..., 1]
            z2d = face[..., 8] - face[..., 2]
            ypd = y[:, None].astype(np.float32) - face[..., 0]
            xpd = x[:, None].astype(np.float32) - face[..., 1]
            det = x1d * y2d - x2d * y1d
            t1 = (y2d * xpd - x2d * ypd) / det
            t2 = (-y1d * xpd + x1d * ypd) / det
            ok = (det != 0) & ~(t1 < 0) & ~(t2 < 0) & ~(1 < t1 + t2)
            th, fc = np.nonzero(ok)
            zf = np.floor(t1[th, fc] * z1d[0, fc] + t2[th, fc] * z2d[0, fc] + face[0, fc, 2])
            zi = np.where((zf >= 0) & (zf < vs), zf, -1).astype(np.int64)
            for dy, dx in ((0, 0), (1, 0), (0, 1), (1, 1)):
                yi, xi = y[th] - dy, x[th] - dx
                m = (0 <= yi) & (yi < vs) & (0 <= xi) & (xi < vs) & (0 <= zi) & (zi < vs)
                voxels[bn * vs ** 3 + yi[m] * vs * vs + xi[m] * vs + zi[m]] = 1
    return voxels.reshape(bs, vs, vs, vs).swapaxes(dim + 1, 3)


def _numpy_voxelize_sub2(faces: np.ndarray, size: int) -> np.ndarray:
    bs = faces.shape[0]
    vs = size
    voxels = np.zeros((bs, vs, vs, vs), dtype=np.int32)
    corner = np.floor(faces.reshape(bs, -1, 3))
    bn = np.repeat(np.arange(bs), corner.shape[1])
    corner = corner.reshape(-1, 3)
    m = ((corner >= 0) & (corner < vs)).all(1)
    c = corner[m].astype(np.int64)
    voxels[bn[m], c[:, 0], c[:, 1], c[:, 2]] = 1
    return voxels


def _numpy_voxelize_sub3(voxels: np.ndarray) -> np.ndarray:
    vs = voxels.shape[1]
    border = np.ones(voxels.shape, dtype=bool)
    border[:, 1:-1, 1:-1, 1:-1] = False
    visible = (border & (voxels == 0)).astype(np.int32)  # voxelize_sub3_kernel
    sum_visible = visible.sum()
    interior = (slice(None), slice(1, vs - 1), slice(1, vs - 1), slice(1, vs - 1))
    while True:  # voxelize_sub4_kernel, every thread reading before any writes
        v = visible
        seen = (v[:, :-2, 1:-1, 1:-1] | v[:, 2:, 1:-1, 1:-1] | v[:, 1:-1, :-2, 1:-1] | v[:, 1:-1, 2:, 1:-1]
                | v[:, 1:-1, 1:-1, :-2] | v[:, 1:-1, 1:-1, 2:])
        new = visible.copy()
        new[interior] |= ((voxels[interior] == 0) & (visible[interior] == 0) & (seen != 0)).astype(np.int32)
        visible = new
        if visible.sum() == sum_visible:
            break
        sum_visible = visible.sum()
    return 1 - visible


def numpy_voxelization(faces: np.ndarray, size: int) -> np.ndarray:
    """As :func:`literal_voxelization`, vectorized."""
    faces = faces.copy()
    faces *= np.float32(size)
    with np.errstate(all="ignore"):
        voxels = (_numpy_voxelize_sub1(faces, size, 0) + _numpy_voxelize_sub1(faces, size, 1)
                  + _numpy_voxelize_sub1(faces, size, 2) + _numpy_voxelize_sub2(faces, size))
    return _numpy_voxelize_sub3((voxels > 0).astype(np.int32))


def softras_oracle(vertices: np.ndarray, faces: np.ndarray, size: int = 32, literal: bool = False) -> np.ndarray:
    """``evaluate_iou``'s predicted grid (before its transpose/flip) as bool (B, R, R, R)."""
    run = literal_voxelization if literal else numpy_voxelization
    return run(evaluate_iou_faces_norm(vertices, faces, size), size).astype(bool)
