"""The SoftRas 3D-IoU voxelization: literal-port oracle == numpy port == reference == C++ kernel."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from softras_voxel_oracle import evaluate_iou_faces_norm, softras_oracle

from recon.mesh import icosphere, load_template
from recon.ops.voxelize_exact import voxelize as voxelize_exact
from bench_ops import bench_voxelize_softras
from recon.ops import voxelize_softras as softras_voxel
from recon.ops.voxelize import PROTOCOLS, voxelize
from recon.ops.voxelize_softras import softras_grid_coords, voxelize_softras, voxelize_softras_reference
from recon.ops.voxelize_softras_ext import VoxelizerUnavailable
from recon.render.base import BackendUnavailable

R = 32
# Many small tensor ops: intra-op threads only add contention on a shared CPU.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def kernel():
    """The compiled kernel (built once per process), or skip."""
    from recon.ops.voxelize_softras_ext import load_voxel_extension

    try:
        return load_voxel_extension()
    except VoxelizerUnavailable as e:
        pytest.skip(str(e))


def _all_agree(verts: torch.Tensor, faces: torch.Tensor, resolution: int = R, literal: bool = False) -> torch.Tensor:
    """Assert that every implementation gives the same grids; return them."""
    oracle = torch.from_numpy(softras_oracle(verts.numpy(), faces.numpy(), resolution))
    if literal:
        lit = torch.from_numpy(softras_oracle(verts.numpy(), faces.numpy(), resolution, literal=True))
        assert torch.equal(lit, oracle), "literal port != numpy port"
    ref = voxelize_softras_reference(verts, faces, resolution)
    fast = voxelize_softras(verts, faces, resolution, impl="cpp")
    for name, got in (("reference", ref), ("cpp", fast)):
        diff = (got != oracle).flatten(1).sum(1)
        assert torch.equal(got, oracle), f"{name} != oracle: differing cells per mesh {diff.tolist()}"
    return fast


# ----------------------------------------------------------------------------------------------
# Test meshes
# ----------------------------------------------------------------------------------------------

def _grid_plane(k: float) -> float:
    """World coordinate of SoftRas grid plane ``k`` (rounded to float32: may land on either side)."""
    return float(np.float32((k - R / 2) / (R - 1)))


def _box(lo, hi) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed axis-aligned box, 8 vertices / 12 faces."""
    c = torch.tensor([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])],
                     dtype=torch.float32)
    f = torch.tensor([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1], [2, 3, 7], [2, 7, 6],
                      [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
    return c, f


def _rotation(g: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    return q.float()


def _deformed_templates(n: int, seed: int, radius=(0.15, 0.5), shift: float = 0.15) -> tuple[torch.Tensor, ...]:
    """Predicted-like meshes: the template sphere, radially noisy, stretched and shifted."""
    v, f = load_template()
    g = torch.Generator().manual_seed(seed)
    unit = v / v.norm(dim=1, keepdim=True)
    r = radius[0] + (radius[1] - radius[0]) * torch.rand(n, 1, 1, generator=g)
    noise = 1 + 0.2 * torch.rand(n, 1, 1, generator=g) * (2 * torch.rand(n, v.shape[0], 1, generator=g) - 1)
    stretch = 0.6 + 0.8 * torch.rand(n, 1, 3, generator=g)
    offset = shift * (2 * torch.rand(n, 1, 3, generator=g) - 1)
    return unit[None] * r * noise * stretch + offset, f


def _affine_icospheres(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """320-face spheres: rotated, some flattened to a thin disc, many touching or crossing the border."""
    v, f = icosphere(2)
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        scale = 0.1 + 0.5 * torch.rand(3, generator=g)
        if i % 3 == 0:
            scale[i % 2] = 0.002 + 0.03 * float(torch.rand(1, generator=g))  # a thin disc
        shift = 0.6 * (2 * torch.rand(3, generator=g) - 1)
        out.append((v * scale) @ _rotation(g).T + shift)
    return torch.stack(out), f


def _plates(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Thin boxes (0 to 4 cm thick), axis-aligned on grid planes or rotated, some crossing the border."""
    g = torch.Generator().manual_seed(seed)
    out = []
    _, f = _box((0, 0, 0), (1, 1, 1))
    for i in range(n):
        thickness = (0.0, 0.003, 0.02, 0.04)[i % 4]
        if i % 2 == 0:  # axis-aligned, corners on (float32-rounded) grid planes or cell middles
            k = torch.randint(2, 30, (3,), generator=g).float() + (0.5 if i % 4 == 2 else 0.0)
            lo = [_grid_plane(float(x)) for x in k - torch.randint(1, 14, (3,), generator=g)]
            hi = [_grid_plane(float(x)) for x in k + torch.randint(1, 14, (3,), generator=g)]
            axis = i % 3
            hi[axis] = lo[axis] + thickness
            c, _ = _box(lo, hi)
        else:
            size = 0.2 + 0.6 * torch.rand(3, generator=g)
            size[i % 3] = thickness
            c, _ = _box(-size / 2, size / 2)
            c = c @ _rotation(g).T + 0.3 * (2 * torch.rand(3, generator=g) - 1)
        out.append(c)
    return torch.stack(out), f


def _degenerate_meshes(seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Meshes with zero-area faces, repeated vertices, collinear corners, and far-away or huge ones."""
    g = torch.Generator().manual_seed(seed)
    v, f = icosphere(1)
    meshes = []
    for i in range(12):
        verts = v * (0.2 + 0.3 * torch.rand(3, generator=g)) + 0.2 * (2 * torch.rand(3, generator=g) - 1)
        faces = f.clone()
        pick = torch.randperm(f.shape[0], generator=g)[:20]
        faces[pick[:5], 1] = faces[pick[:5], 0]  # repeated vertex
        faces[pick[5:8], 1:] = faces[pick[5:8], :1]  # all three the same
        mids = 0.5 * (verts[faces[pick[8:14], 0]] + verts[faces[pick[8:14], 1]])  # collinear corners
        faces[pick[8:14], 2] = torch.arange(verts.shape[0], verts.shape[0] + 6)
        verts = torch.cat([verts, mids])
        if i % 2:  # collapse some vertices onto one point
            verts[torch.randperm(verts.shape[0], generator=g)[:10]] = verts[0].clone()
        meshes.append((verts, faces))
    box_v, box_f = _box((-0.3, -0.2, -0.1), (0.25, 0.3, 0.2))
    meshes.append((box_v * 0 + 0.1, box_f))  # every vertex on one point
    meshes.append((box_v + 3.0, box_f))  # entirely outside the grid
    meshes.append((box_v * 4.0, box_f))  # encloses the whole grid: nothing inside it is marked
    meshes.append((box_v * torch.tensor([1.0, 1.0, 0.0]), box_f))  # flattened to z = 0: a double plate
    line = torch.tensor([[-0.4, -0.3, -0.2], [0.4, 0.3, 0.2], [0.0, 0.0, 0.0], [0.2, 0.15, 0.1]])
    meshes.append((line, torch.tensor([[0, 1, 2], [1, 3, 0], [2, 3, 0], [0, 0, 1]])))  # all collinear
    nested_outer = _box((-0.45, -0.45, -0.45), (0.45, 0.45, 0.45))
    nested_inner = _box((-0.2, -0.25, -0.1), (0.3, 0.2, 0.25))
    meshes.append((torch.cat([nested_outer[0], nested_inner[0]]), torch.cat([nested_outer[1], nested_inner[1] + 8])))
    # A cup: open box, so the inside is reached from the top through the opening.
    cup_v, cup_f = _box((-0.3, -0.3, -0.3), (0.3, 0.3, 0.3))
    meshes.append((cup_v, cup_f[[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]]))
    return meshes


def _slivers(n: int, seed: int, faces_per_mesh: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    """Triangle soups of nearly degenerate faces: collinear up to rounding or nearly (a sliver of
    relative width 1e-2 to 1e-8), nearly edge-on to one axis, spanning the grid, corners on grid
    planes. These exercise the kernel's rule for which columns a face may hit."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        a = 1.2 * torch.rand(faces_per_mesh, 3, generator=g) - 0.6
        b = 1.2 * torch.rand(faces_per_mesh, 3, generator=g) - 0.6
        if i % 3 == 2:  # a and b on grid points: the line through them passes through integer columns
            snap = lambda x: ((x * (R - 1) + R / 2).round() - R / 2) / (R - 1)  # noqa: E731
            a, b = snap(a), snap(b)
        t = torch.rand(faces_per_mesh, 1, generator=g)
        width = 10.0 ** -(2 + 6 * torch.rand(faces_per_mesh, 1, generator=g))
        width[::3] = 0  # collinear but for float32 rounding: det is tiny, t1 and t2 are far off
        c = a + t * (b - a) + width * torch.randn(faces_per_mesh, 3, generator=g)
        if i % 3 == 1:  # nearly edge-on to an axis: one coordinate almost constant
            axis = (i // 3) % 3
            a[:, axis] = b[:, axis] + width[:, 0] * torch.randn(faces_per_mesh, generator=g)
            c[:, axis] = b[:, axis] - width[:, 0] * torch.randn(faces_per_mesh, generator=g)
        out.append(torch.stack([a, b, c], 1).reshape(-1, 3))
    return torch.stack(out), torch.arange(3 * faces_per_mesh).reshape(-1, 3)


# ----------------------------------------------------------------------------------------------
# Agreement
# ----------------------------------------------------------------------------------------------

def test_grid_coords_equal_evaluate_iou_bitwise():
    """fl32(fl32(31 v) + 16) is evaluate_iou's (v * 1. * 31 / 32 + 0.5) * 32, bit for bit."""
    g = torch.Generator().manual_seed(0)
    planes = torch.tensor([(k - 16) / 31 for k in range(-3, 36)], dtype=torch.float64)
    near = torch.cat([planes + d for d in (-1e-7, -1e-8, 0.0, 1e-8, 1e-7)]).float()
    v = torch.cat([near, torch.rand(200000, generator=g) * 3 - 1.5, torch.tensor([0.0, -0.0, 1e-40, -1e-40, 1e-30]),
                   (torch.rand(1000, generator=g) - 0.5) * 1e6]).float()
    verts = v.reshape(1, -1, 1).expand(1, -1, 3).contiguous()
    faces = torch.arange(verts.shape[1] - verts.shape[1] % 3).reshape(-1, 3)
    want = evaluate_iou_faces_norm(verts.numpy(), faces.numpy(), 32) * np.float32(32)
    got = softras_grid_coords(verts, 32)[:, faces].numpy()
    assert np.array_equal(want.view(np.int32), got.view(np.int32))


def test_literal_port_agrees_on_small_meshes(kernel):
    """The loop-for-loop port of the CUDA kernels == the vectorized port == reference == kernel."""
    box = _box((_grid_plane(9), _grid_plane(12), _grid_plane(20)), (_grid_plane(21), _grid_plane(14.5), 0.3))
    plate_v, plate_f = _plates(2, seed=5)
    degenerate = _degenerate_meshes(seed=3)
    v1, f1 = icosphere(1)
    crossing = (v1 * torch.tensor([0.45, 0.3, 0.5]) + torch.tensor([0.2, -0.15, 0.1]))[None]
    sliver_v, sliver_f = _slivers(1, seed=9, faces_per_mesh=12)
    cases = [(box[0][None], box[1]), (plate_v, plate_f), (degenerate[0][0][None], degenerate[0][1]),
             (degenerate[-2][0][None], degenerate[-2][1]), (crossing, f1), (sliver_v, sliver_f)]
    for verts, faces in cases:
        _all_agree(verts, faces, literal=True)


def test_oracle_reference_kernel_agree_on_many_meshes(kernel):
    """>= 200 meshes: predicted-like spheres, flattened and border-crossing icospheres, thin plates,
    degenerate meshes and sliver soups, cell for cell."""
    groups = [
        _deformed_templates(48, seed=1),
        _deformed_templates(16, seed=2, radius=(0.45, 0.75), shift=0.2),  # crossing the border
        _affine_icospheres(48, seed=3),
        _plates(40, seed=4),
        _slivers(30, seed=6),
    ]
    groups += [(v[None], f) for v, f in _degenerate_meshes(seed=7)]
    cells = torch.cat([_all_agree(verts, faces).flatten(1).sum(1) for verts, faces in groups])
    assert cells.numel() >= 200
    # Not a trivial set: nearly every mesh fills cells, a few (far away, enclosing the grid) none.
    assert 0 < int((cells == 0).sum()) <= 5


def test_resolution_other_than_32(kernel):
    verts, faces = _affine_icospheres(6, seed=11)
    _all_agree(verts, faces, resolution=16)
    verts, faces = _deformed_templates(2, seed=12)
    _all_agree(verts, faces, resolution=64)


# ----------------------------------------------------------------------------------------------
# Semantics
# ----------------------------------------------------------------------------------------------

def test_grid_geometry_and_index_order(kernel):
    """[i, j, k] <-> (x, y, z); cell c holds world [(c - 16)/31, (c - 15)/31)."""
    lo, hi = (0.20, -0.10, 0.05), (0.30, 0.02, 0.11)
    v, f = _box(lo, hi)
    grid = voxelize_softras(v[None], f)[0]
    idx = grid.nonzero()
    for axis in range(3):
        first, last = math.floor(31 * lo[axis] + 16), math.floor(31 * hi[axis] + 16)
        assert (int(idx[:, axis].min()), int(idx[:, axis].max())) == (first, last)
    # A solid box is filled: every cell between its extremes.
    span = [math.floor(31 * hi[a] + 16) - math.floor(31 * lo[a] + 16) + 1 for a in range(3)]
    assert int(grid.sum()) == span[0] * span[1] * span[2]


def test_thin_plate_keeps_cells_unlike_exact(kernel):
    """A 2 cm plate lying between cell centres: SoftRas marks it, ray parity at centres does not."""
    v, f = _box((-0.3, -0.3, -0.0125), (0.3, 0.3, 0.0075))
    soft = voxelize(v[None], f, protocol="softras")
    exact = voxelize(v[None], f, protocol="exact")
    assert int(exact.sum()) == 0
    assert int(soft.sum()) >= 19 * 19  # at least one layer across the plate


def test_enclosed_cavity_is_filled_open_cup_is_not(kernel):
    nested = _degenerate_meshes(seed=0)[-2]
    cup = _degenerate_meshes(seed=0)[-1]
    outer = _box((-0.45, -0.45, -0.45), (0.45, 0.45, 0.45))
    full = voxelize_softras(nested[0][None], nested[1])
    assert torch.equal(full, voxelize_softras(outer[0][None], outer[1]))  # the cavity is enclosed: filled
    open_cup = voxelize_softras(cup[0][None], cup[1])[0]
    assert int(open_cup.sum()) < 0.5 * int(voxelize_softras(_box((-0.3,) * 3, (0.3,) * 3)[0][None],
                                                            _box((-0.3,) * 3, (0.3,) * 3)[1]).sum())


# ----------------------------------------------------------------------------------------------
# API
# ----------------------------------------------------------------------------------------------

def test_voxelize_dispatches_by_protocol(kernel):
    verts, faces = _deformed_templates(3, seed=13)
    assert PROTOCOLS == ("softras-iou", "exact")
    assert torch.equal(voxelize(verts, faces), voxelize_softras(verts, faces))
    assert torch.equal(voxelize(verts, faces, protocol="exact"), voxelize_exact(verts, faces, R))
    assert torch.equal(voxelize_softras(verts, faces, impl="torch"), voxelize_softras_reference(verts, faces))
    with pytest.raises(ValueError, match="unknown voxelization protocol 'nmr'"):
        voxelize(verts, faces, protocol="nmr")
    with pytest.raises(ValueError, match="unknown impl"):
        voxelize_softras(verts, faces, impl="cuda")


def test_dtype_device_and_empty_inputs(kernel):
    verts, faces = _deformed_templates(2, seed=14)
    out = voxelize_softras(verts.double(), faces.int())
    assert out.dtype == torch.bool and out.shape == (2, R, R, R) and out.device == verts.device
    assert torch.equal(out, voxelize_softras(verts.double().float(), faces))
    assert voxelize_softras(verts[:0], faces).shape == (0, R, R, R)
    assert voxelize_softras_reference(verts[:0], faces).shape == (0, R, R, R)
    assert not voxelize_softras(verts, faces[:0]).any()
    assert not voxelize_softras_reference(verts, faces[:0]).any()


@pytest.mark.parametrize("fn", [voxelize_softras, voxelize_softras_reference])
def test_bad_inputs_are_one_line_errors(fn):
    verts, faces = _deformed_templates(1, seed=15)
    bad = [
        ((verts[0], faces), "verts must be \\(B, V, 3\\)"),
        ((verts, faces[:, :2]), "faces must be \\(F, 3\\)"),
        ((verts, faces.float()), "faces must be an integer tensor"),
        ((verts, faces + verts.shape[1]), "face indices must lie in"),
        ((verts.clone().index_fill_(1, torch.tensor([3]), float("nan")), faces), "NaN or Inf"),
        ((verts * 1e7, faces), "vertex coordinates must lie in"),
        ((verts, faces, 1), "resolution must be an integer in"),
    ]
    for args, message in bad:
        with pytest.raises(ValueError, match=message) as info:
            fn(*args)
        assert "\n" not in str(info.value)


def test_auto_falls_back_to_reference_without_kernel(monkeypatch):
    from recon.ops import jit

    monkeypatch.setattr(jit, "_CACHE", {})  # forget the kernel this process built
    monkeypatch.setenv("CXX", "no-such-compiler")
    monkeypatch.setattr(softras_voxel, "_WARNED_FALLBACK", False)
    verts, faces = _affine_icospheres(2, seed=16)
    with pytest.warns(RuntimeWarning, match="no C.. compiler found"):
        out = voxelize_softras(verts, faces)
    assert torch.equal(out, voxelize_softras_reference(verts, faces))
    with pytest.raises(VoxelizerUnavailable, match="voxelization kernel unavailable: no C.. compiler found") as e:
        voxelize_softras(verts, faces, impl="cpp")
    assert not isinstance(e.value, BackendUnavailable)  # the renderer's error stays the renderer's


def test_bench_reports_meshes_per_second(kernel):
    rate = bench_voxelize_softras(batch=4, repeats=1)
    assert math.isfinite(rate) and rate > 0
