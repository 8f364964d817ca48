"""The SoftRas/NMR 3D-IoU voxelization (``examples/recon/models.py::evaluate_iou``).

Every published single-view number on the SoftRas/NMR data was scored with this procedure. It
differs from :func:`recon.ops.voxelize_exact.voxelize` (exact ray parity at cell centres) in its grid and in
how it fills a mesh:

1. **Grid.** ``evaluate_iou`` maps a vertex coordinate ``v`` to ``(v * 31/32 + 0.5) * 32`` in
   float32; cell ``c`` holds ``[c, c + 1)`` of that value, i.e. world ``[(c - 16)/31,
   (c - 15)/31)``: 32 cells of width 1/31 spanning ``[-16/31, 16/31]``. We compute the grid
   coordinate as ``p = fl32(fl32((R - 1) * v) + R / 2)``, which equals SoftRas's
   ``fl32(fl32(fl32(fl32(v * 31) / 32) + 0.5) * 32)`` bit for bit for ``R = 32`` (the division
   and multiplication by 32 are exact) and generalizes it to other ``R``.
2. **Surface cells** (``voxelize_sub1_kernel``, once per axis). For each axis a column is cast
   at every integer position ``(a, b)``, ``0 <= a, b < R``, of the other two grid coordinates;
   where it crosses a face (barycentric test below), at depth ``d``, the cells ``[a, b, floor(d)]``,
   ``[a - 1, b, .]``, ``[a, b - 1, .]`` and ``[a - 1, b - 1, .]`` are marked (a column at an
   integer position lies on the boundary of the four cells around it). Per axis the kernel sees
   the face corners with their coordinates in the order ``AXIS_ORDER[axis]`` =
   ``(first column coordinate "y", second "x", depth "z")``:
   axis 0 -> ``(2, 1, 0)``, axis 1 -> ``(0, 2, 1)``, axis 2 -> ``(0, 1, 2)`` (SoftRas's
   ``faces[..., [2, 1, 0]]`` / ``[0, 2, 1]`` then ``transpose(axis + 1, -1)``; swapping "y" and
   "x" would change no bit: it negates det and both numerators exactly). The test, in
   float32, unfused, in exactly this order (``A``, ``B``, ``C`` the corners)::

       y1d = B.y - A.y; x1d = B.x - A.x; z1d = B.z - A.z   (and y2d, x2d, z2d with C)
       det = x1d * y2d - x2d * y1d;  skip the face if det == 0
       ypd = y - A.y; xpd = x - A.x
       t1 = (y2d * xpd - x2d * ypd) / det;  t2 = (-y1d * xpd + x1d * ypd) / det
       hit unless t1 < 0 or t2 < 0 or 1 < t1 + t2;  depth = t1 * z1d + t2 * z2d + A.z

3. **Corner cells** (``voxelize_sub2_kernel``): the cell ``floor(p)`` of every face corner
   (vertices used by no face are ignored).
4. **Fill** (``voxelize_sub3/4``): every empty cell on the grid border is outside; an empty
   cell with an outside 6-neighbour is outside, repeated to the fixed point (the CUDA loop stops
   when the count no longer changes, which is that unique fixed point). Occupancy is the
   complement of the outside: surface cells plus the empty cells the surface encloses.

Index order. SoftRas's grid is indexed by the vertex coordinates in their order, so
``grid[c0, c1, c2]`` is the cell of ``(x, y, z)`` -- the order of our grids (docs/ARCHITECTURE.md,
"Voxels"). ``evaluate_iou`` then compares ``grid.transpose(0, 2, 1, 3)[..., ::-1]`` with
the NMR voxels, and our converter (:mod:`recon.data.softras_npz`) applies exactly the inverse of
that map to the NMR voxels once, at conversion. So the grids returned here are SoftRas's grids
unchanged (no flip, no transpose), and compare directly with our ground truth; cell ``[i, j, k]``
is centred at world ``((i + 0.5 - R/2) / (R - 1), ...)`` rather than ``-0.5 + (i + 0.5) / R``.

Precision. SoftRas evaluates in float32 on the GPU, and nvcc fuses multiply-adds by default, so
its result can differ from the unfused IEEE float32 arithmetic above (which is what nvcc
``--fmad=false`` produces) for a column within a few float32 ulps (about 1e-5 grid units) of a
face edge or a depth that close to a cell boundary. We define the protocol as the unfused arithmetic, which
every implementation here (and the oracle in the tests) reproduces bit for bit.

Two implementations: :func:`voxelize_softras_reference` (plain tensor code, every column
against every face) and the C++ kernel in ``csrc/voxelize/softras_voxel.cpp`` (only the columns a face
can hit; see there for why skipping the others never changes the result), chosen by
:func:`voxelize_softras`.
"""

from __future__ import annotations

import warnings

import torch

__all__ = [
    "AXIS_ORDER",
    "IMPLS",
    "MAX_ABS_COORD",
    "MAX_RESOLUTION",
    "softras_grid_coords",
    "voxelize_softras_reference",
    "voxelize_softras",
    "fill_enclosed",
]

AXIS_ORDER: tuple[tuple[int, int, int], ...] = ((2, 1, 0), (0, 2, 1), (0, 1, 2))
IMPLS = ("auto", "cpp", "torch")
# Larger coordinates are refused: they are no prediction, and far below where float32 products overflow.
MAX_ABS_COORD = 1e6
MAX_RESOLUTION = 1000
# Faces per chunk of the reference's dense (faces x columns) tensors.
_REFERENCE_CHUNK_ELEMS = 1 << 21
_WARNED_FALLBACK = False


def _check_inputs(verts: torch.Tensor, faces: torch.Tensor, resolution: int, where: str) -> None:
    """One-line ``ValueError`` for anything the protocol cannot take."""
    if verts.ndim != 3 or verts.shape[-1] != 3:
        raise ValueError(f"{where}: verts must be (B, V, 3), got {tuple(verts.shape)}")
    if faces.ndim != 2 or faces.shape[-1] != 3:
        raise ValueError(f"{where}: faces must be (F, 3), got {tuple(faces.shape)}")
    if faces.dtype.is_floating_point or faces.dtype == torch.bool or faces.is_complex():
        raise ValueError(f"{where}: faces must be an integer tensor, got {faces.dtype}")
    if not verts.dtype.is_floating_point:
        raise ValueError(f"{where}: verts must be a floating-point tensor, got {verts.dtype}")
    if isinstance(resolution, bool) or int(resolution) != resolution or not 2 <= resolution <= MAX_RESOLUTION:
        raise ValueError(f"{where}: resolution must be an integer in [2, {MAX_RESOLUTION}], got {resolution!r}")
    if faces.numel() and (int(faces.min()) < 0 or int(faces.max()) >= verts.shape[1]):
        raise ValueError(f"{where}: face indices must lie in [0, {verts.shape[1]}), "
                         f"got [{int(faces.min())}, {int(faces.max())}]")
    if verts.numel():
        v = verts.detach()
        if not torch.isfinite(v).all():
            raise ValueError(f"{where}: verts contain NaN or Inf")
        if float(v.abs().max()) > MAX_ABS_COORD:
            raise ValueError(f"{where}: vertex coordinates must lie in [-{MAX_ABS_COORD:g}, {MAX_ABS_COORD:g}], "
                             f"got {float(v.abs().max()):g}")


def softras_grid_coords(verts: torch.Tensor, resolution: int = 32) -> torch.Tensor:
    """World coordinates -> SoftRas grid coordinates (cell ``c`` holds ``[c, c + 1)``).

    Args:
        verts: (..., 3) float; converted to float32 first (SoftRas's precision).
        resolution: R (32 for the published protocol).
    Returns:
        (..., 3) float32 ``fl32(fl32((R - 1) * v) + R / 2)``; for R = 32 bitwise equal to
        ``evaluate_iou``'s ``(v * 1. * (32. - 1) / 32. + 0.5) * 32`` in float32.
    """
    v = verts.detach().to(torch.float32)
    return v * float(resolution - 1) + float(resolution) / 2


# ----------------------------------------------------------------------------------------------
# Reference: plain tensor code, every column against every face
# ----------------------------------------------------------------------------------------------

def _column_hits(tri: torch.Tensor, resolution: int) -> tuple[torch.Tensor, ...]:
    """``voxelize_sub1_kernel`` for one mesh and one axis: every (column, face) crossing.

    Args:
        tri: (F, 3, 3) float32 corners, coordinates already in kernel order (y, x, z).
        resolution: R.
    Returns:
        (y, x, z): (H,) int64 column coordinates and depth cell of each crossing whose depth cell
        lies in ``[0, R)`` (the neighbour marks are made by the caller).
    """
    r = resolution
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]  # (F, 3) each
    y1d, x1d, z1d = (b - a).unbind(1)
    y2d, x2d, z2d = (c - a).unbind(1)
    det = x1d * y2d - x2d * y1d
    grid = torch.arange(r, dtype=torch.float32, device=tri.device)

    def per_face(t: torch.Tensor) -> torch.Tensor:
        return t[:, None, None]

    ypd = grid[None, :, None] - per_face(a[:, 0])  # (F, R, 1): column coordinate y
    xpd = grid[None, None, :] - per_face(a[:, 1])  # (F, 1, R): column coordinate x
    t1 = (per_face(y2d) * xpd - per_face(x2d) * ypd) / per_face(det)  # (F, R, R)
    t2 = (per_face(-y1d) * xpd + per_face(x1d) * ypd) / per_face(det)
    # Written as the kernel's `continue`s, so that NaN would pass exactly as it does there.
    hit = per_face(det != 0) & ~(t1 < 0) & ~(t2 < 0) & ~(1 < t1 + t2)
    f, y, x = hit.nonzero(as_tuple=True)
    depth = torch.floor(t1[f, y, x] * z1d[f] + t2[f, y, x] * z2d[f] + a[f, 2])
    keep = (depth >= 0) & (depth < r)
    return y[keep], x[keep], depth[keep].long()


def _surface_cells(tri: torch.Tensor, resolution: int) -> torch.Tensor:
    """Cells marked by the three column sweeps and the face corners, for one mesh.

    Args:
        tri: (F, 3, 3) float32 face corners in grid coordinates (x, y, z order).
    Returns:
        (R, R, R) bool in our index order.
    """
    r = resolution
    surface = torch.zeros(r, r, r, dtype=torch.bool, device=tri.device)
    chunk = max(1, _REFERENCE_CHUNK_ELEMS // (r * r))
    for order in AXIS_ORDER:
        for s in range(0, tri.shape[0], chunk):
            y, x, z = _column_hits(tri[s:s + chunk][:, :, list(order)], r)
            for dy, dx in ((0, 0), (1, 0), (0, 1), (1, 1)):
                yi, xi = y - dy, x - dx
                ok = (yi >= 0) & (xi >= 0)  # y, x < R always
                kernel_index = (yi[ok], xi[ok], z[ok])
                ours = [None, None, None]
                for k, axis in enumerate(order):  # kernel coordinate k is our axis order[k]
                    ours[axis] = kernel_index[k]
                surface[ours[0], ours[1], ours[2]] = True
    corner = torch.floor(tri.reshape(-1, 3))
    inside = ((corner >= 0) & (corner < r)).all(1)
    i, j, k = corner[inside].long().unbind(1)
    surface[i, j, k] = True
    return surface


def fill_enclosed(surface: torch.Tensor) -> torch.Tensor:
    """Occupancy from surface cells: everything but the empty cells 6-connected to the border.

    Args:
        surface: (B, R, R, R) bool.
    Returns:
        (B, R, R, R) bool: ``surface`` plus the empty cells it encloses.
    """
    empty = ~surface
    border = torch.ones_like(surface)
    border[:, 1:-1, 1:-1, 1:-1] = False
    outside = empty & border
    while True:
        grown = outside.clone()
        grown[:, 1:] |= outside[:, :-1]
        grown[:, :-1] |= outside[:, 1:]
        grown[:, :, 1:] |= outside[:, :, :-1]
        grown[:, :, :-1] |= outside[:, :, 1:]
        grown[:, :, :, 1:] |= outside[:, :, :, :-1]
        grown[:, :, :, :-1] |= outside[:, :, :, 1:]
        grown &= empty
        if torch.equal(grown, outside):
            return ~outside
        outside = grown


def voxelize_softras_reference(verts: torch.Tensor, faces: torch.Tensor, resolution: int = 32) -> torch.Tensor:
    """SoftRas's voxelization, plain tensor code (every column against every face).

    Args:
        verts: (B, V, 3) float world coordinates (converted to float32), any device.
        faces: (F, 3) integer vertex indices shared by the batch.
        resolution: R (32 for the published protocol).
    Returns:
        (B, R, R, R) bool on ``verts.device``, ``[b, i, j, k]`` <-> (x, y, z) on the SoftRas
        grid (module docstring).
    Raises:
        ValueError: wrong shapes or dtypes, face indices out of range, non-finite vertices or
            coordinates beyond ``MAX_ABS_COORD``.
    """
    _check_inputs(verts, faces, resolution, "voxelize_softras_reference")
    r = int(resolution)
    with torch.no_grad():
        p = softras_grid_coords(verts, r)
        tri = p[:, faces.to(device=p.device, dtype=torch.long)]  # (B, F, 3, 3)
        surface = torch.stack([_surface_cells(t, r) for t in tri]) if tri.shape[0] else \
            torch.zeros(0, r, r, r, dtype=torch.bool, device=p.device)
        return fill_enclosed(surface)


# ----------------------------------------------------------------------------------------------
# Dispatch to the fast kernel
# ----------------------------------------------------------------------------------------------

def voxelize_softras(verts: torch.Tensor, faces: torch.Tensor, resolution: int = 32,
                     impl: str = "auto") -> torch.Tensor:
    """SoftRas's voxelization, fast: same cells as :func:`voxelize_softras_reference`.

    Args:
        verts: (B, V, 3) float world coordinates (converted to float32), any device.
        faces: (F, 3) integer vertex indices shared by the batch.
        resolution: R (32 for the published protocol).
        impl: ``"cpp"`` (the C++ kernel, built on first use), ``"torch"`` (the reference) or
            ``"auto"``: cpp, else the reference with a one-time warning when no kernel can be built.
    Returns:
        (B, R, R, R) bool on ``verts.device``, ``[b, i, j, k]`` <-> (x, y, z).
    Raises:
        ValueError: bad inputs (as the reference) or an unknown ``impl``.
        recon.ops.voxelize_softras_ext.VoxelizerUnavailable: ``impl="cpp"`` and the kernel cannot be built.
    """
    global _WARNED_FALLBACK
    if impl not in IMPLS:
        raise ValueError(f"voxelize_softras: unknown impl {impl!r}; valid: {', '.join(IMPLS)}")
    if impl == "torch":
        return voxelize_softras_reference(verts, faces, resolution)
    from recon.ops.voxelize_softras_ext import VoxelizerUnavailable, load_voxel_extension

    try:
        module = load_voxel_extension()
    except VoxelizerUnavailable as e:
        if impl == "cpp":
            raise
        if not _WARNED_FALLBACK:
            warnings.warn(f"{e}; using the (slower) tensor reference", RuntimeWarning, stacklevel=2)
            _WARNED_FALLBACK = True
        return voxelize_softras_reference(verts, faces, resolution)
    _check_inputs(verts, faces, resolution, "voxelize_softras")
    with torch.no_grad():
        p = softras_grid_coords(verts.detach().cpu(), int(resolution)).contiguous()
        f = faces.detach().to("cpu", torch.int64).contiguous()
        out = module.voxelize(p, f, int(resolution))
    return out.to(verts.device)
