"""Tests for recon.metrics: voxelization (axis order, exactness, robustness), winding numbers,
IoU, surface points, Chamfer and F-score."""

from __future__ import annotations

import math

import pytest
import torch

from tools.bench import bench_voxelize
from recon.mesh import icosphere
from metrics_reference import mesh_vs_voxels_metrics
from recon.metrics import chamfer_distance, fscore, iou_3d, sample_mesh_surface, surface_points_from_voxels
from recon.ops.voxelize_exact import voxel_centers, voxelize, winding_number, winding_occupancy

R = 32
BOX_FACES = torch.tensor([[1, 2, 0], [3, 2, 1], [6, 5, 4], [6, 7, 5], [4, 1, 0], [4, 5, 1],
                          [3, 6, 2], [7, 6, 3], [2, 4, 0], [6, 4, 2], [5, 3, 1], [5, 7, 3]])


def box(lo: tuple[float, float, float], hi: tuple[float, float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Axis-aligned box, 8 vertices (vertex n has bit 2/1/0 of n selecting x/y/z = hi), 12 outward faces."""
    v = torch.tensor([[hi[0] if n & 4 else lo[0], hi[1] if n & 2 else lo[1], hi[2] if n & 1 else lo[2]]
                      for n in range(8)], dtype=torch.float32)
    return v, BOX_FACES.clone()


def expected_box(lo, hi, r=R) -> torch.Tensor:
    c = voxel_centers(r, dtype=torch.float64)
    axes = [(c >= lo[d]) & (c <= hi[d]) for d in range(3)]
    return axes[0][:, None, None] & axes[1][None, :, None] & axes[2][None, None, :]


def star_mesh(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    v, f = icosphere(3)
    g = torch.Generator().manual_seed(seed)
    return v * (0.2 + 0.25 * torch.rand(v.shape[0], 1, generator=g)), f


def test_box_is_outward_oriented():
    v, f = box((-0.25,) * 3, (0.25,) * 3)
    tri = v[f]
    normals = torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    assert ((normals * tri.mean(1)).sum(1) > 0).all()


def test_centred_cube_is_exactly_16_cubed():
    v, f = box((-0.25,) * 3, (0.25,) * 3)
    occ = voxelize(v[None], f)[0]
    assert occ.shape == (R, R, R) and occ.dtype == torch.bool
    assert occ.sum().item() == 16 ** 3
    assert occ[8:24, 8:24, 8:24].all()


def test_off_centre_box_pins_axis_order():
    lo, hi = (0.0, -0.25, -0.1), (0.5, 0.25, 0.2)
    v, f = box(lo, hi)
    occ = voxelize(v[None], f)[0]
    idx = occ.nonzero()
    assert idx[:, 0].min() == 16 and idx[:, 0].max() == 31  # x in [0, 0.5] -> i >= 16
    assert idx[:, 1].min() == 8 and idx[:, 1].max() == 23
    assert idx[:, 2].min() == 13 and idx[:, 2].max() == 21  # centres -0.5+(k+.5)/32 in [-0.1, 0.2]
    assert torch.equal(occ, expected_box(lo, hi))
    assert torch.equal(winding_occupancy(v, f), expected_box(lo, hi))


def test_rays_through_faces_edges_and_vertices_are_exact():
    # Box faces lie exactly on voxel centres: every boundary column runs inside a side face and
    # through edges and vertices. Points on the surface count as if shifted by (+e, +e^2, -e^3).
    c = voxel_centers(R, dtype=torch.float32)
    v, f = box((c[8].item(),) * 3, (c[23].item(),) * 3)
    occ = voxelize(v[None], f)[0]
    expected = torch.zeros(R, R, R, dtype=torch.bool)
    expected[8:23, 8:23, 9:24] = True
    assert torch.equal(occ, expected)
    # A diamond (octahedron) whose vertices sit on column centres, edges along column diagonals.
    oct_v = torch.tensor([[c[20], c[16], c[16]], [c[12], c[16], c[16]], [c[16], c[20], c[16]],
                          [c[16], c[12], c[16]], [c[16], c[16], c[20]], [c[16], c[16], c[12]]])
    oct_f = torch.tensor([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])
    occ = voxelize(oct_v[None], oct_f)[0]
    ijk = torch.stack(torch.meshgrid(*(torch.arange(R),) * 3, indexing="ij"), -1)
    l1 = (ijk - 16).abs().sum(-1)
    assert (occ[l1 < 4]).all() and not occ[l1 > 4].any()
    assert torch.equal(occ, voxelize(oct_v[None].double(), oct_f)[0])  # float32 input gives the same


def test_sphere_volume_within_3_percent():
    v, f = icosphere(4)
    n = voxelize((v * 0.4)[None], f)[0].sum().item()
    analytic = 4 / 3 * math.pi * 0.4 ** 3 * R ** 3
    assert abs(n - analytic) / analytic < 0.03


def test_batch_and_chunking_match_single_meshes():
    meshes = [star_mesh(s) for s in range(3)]
    verts = torch.stack([m[0] for m in meshes])
    f = meshes[0][1]
    batched = voxelize(verts, f, chunk=2)
    for b in range(3):
        assert torch.equal(batched[b], voxelize(verts[b:b + 1], f)[0])
    assert voxelize(verts[:0], f).shape == (0, R, R, R)
    with pytest.raises(ValueError, match="NaN"):
        voxelize(torch.full((1, 642, 3), float("nan")), f)


@pytest.mark.parametrize("seed", [None, 0, 1])
def test_voxelize_agrees_with_winding_number(seed):
    if seed is None:
        v, f = icosphere(3)
        v = v * 0.45
    else:
        v, f = star_mesh(seed)
    vox = voxelize(v[None], f)[0]
    wind = winding_occupancy(v, f)
    assert vox.sum() > 1000
    assert (vox != wind).sum().item() == 0


def test_winding_number_values():
    v, f = box((-0.25,) * 3, (0.25,) * 3)
    pts = torch.tensor([[0.0, 0.0, 0.0], [0.1, -0.2, 0.05], [0.4, 0.0, 0.0], [0.0, -0.3, 0.3]])
    w = winding_number(pts, v, f)
    assert torch.allclose(w, torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64), atol=1e-4)
    w64 = winding_number(pts, v, f, dtype=torch.float64)
    assert torch.allclose(w64, torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64), atol=1e-10)
    # Inverted orientation -> -1 inside; winding_occupancy uses |w|.
    assert winding_number(pts[:1], v, f.flip(1)).item() == pytest.approx(-1.0, abs=1e-4)
    assert torch.equal(winding_occupancy(v, f.flip(1)), expected_box((-0.25,) * 3, (0.25,) * 3))


def test_winding_occupancy_overlapping_boxes_union():
    a_lo, a_hi, b_lo, b_hi = (-0.3, -0.3, -0.3), (0.1, 0.1, 0.1), (-0.1, -0.2, -0.05), (0.35, 0.2, 0.3)
    va, fa = box(a_lo, a_hi)
    vb, fb = box(b_lo, b_hi)
    occ = winding_occupancy(torch.cat([va, vb]), torch.cat([fa, fb + 8]))
    assert torch.equal(occ, expected_box(a_lo, a_hi) | expected_box(b_lo, b_hi))


def test_winding_occupancy_box_with_missing_face_is_mostly_filled():
    lo, hi = (-0.3,) * 3, (0.3,) * 3
    v, f = box(lo, hi)
    open_faces = f[[i for i in range(12) if i not in (2, 3)]]  # drop the x = lo face
    occ = winding_occupancy(v, open_faces)
    full = expected_box(lo, hi)
    assert not (occ & ~full).any()
    assert occ.sum().item() >= 0.8 * full.sum().item()


def test_iou_3d():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 8, 8, 8, generator=g) > 0.5
    assert torch.equal(iou_3d(a, a), torch.ones(2))
    assert torch.equal(iou_3d(a, ~a), torch.zeros(2))
    empty = torch.zeros(1, 8, 8, 8, dtype=torch.bool)
    assert iou_3d(empty, empty).item() == 1.0
    half = empty.clone()
    half[0, :4] = True
    assert iou_3d(half, torch.ones_like(half)).item() == pytest.approx(0.5)


def test_surface_points_from_voxels():
    vox = torch.zeros(8, 8, 8, dtype=torch.bool)
    vox[2:5, 2:5, 2:5] = True  # 27 voxels, only the centre (3,3,3) is interior
    pts = surface_points_from_voxels(vox)
    assert pts.shape == (26, 3)
    centre = torch.tensor([-0.5 + 3.5 / 8] * 3)
    assert not (pts - centre).abs().sum(1).eq(0).any()
    full = torch.ones(4, 4, 4, dtype=torch.bool)  # grid boundary counts as empty
    assert surface_points_from_voxels(full).shape == (64 - 8, 3)
    # World coordinates with the documented axis order: voxel (7, 0, 0) -> x high, y/z low.
    one = torch.zeros(8, 8, 8, dtype=torch.bool)
    one[7, 0, 0] = True
    assert torch.allclose(surface_points_from_voxels(one), torch.tensor([[0.4375, -0.4375, -0.4375]]))


def test_sample_mesh_surface_on_surface_area_weighted_deterministic():
    v, f = box((-0.25,) * 3, (0.25,) * 3)
    p = sample_mesh_surface(v, f, 1000, torch.Generator().manual_seed(0))
    assert p.shape == (1000, 3)
    assert torch.allclose(p.abs().amax(1), torch.full((1000,), 0.25), atol=1e-6)
    assert torch.equal(p, sample_mesh_surface(v, f, 1000, torch.Generator().manual_seed(0)))
    # Two triangles with areas 1 and 3 (z = 0 and z = 1): about 25% / 75% of the samples.
    tv = torch.tensor([[0.0, 0, 0], [2, 0, 0], [0, 1, 0], [0.0, 0, 1], [3, 0, 1], [0, 2, 1]])
    tp = sample_mesh_surface(tv, torch.tensor([[0, 1, 2], [3, 4, 5]]), 8000, torch.Generator().manual_seed(1))
    assert (tp[:, 2] == 0).float().mean().item() == pytest.approx(0.25, abs=0.02)
    with pytest.raises(ValueError, match="zero surface area"):
        sample_mesh_surface(torch.zeros(3, 3), torch.tensor([[0, 1, 2]]), 10)


def test_chamfer_and_fscore():
    ijk = torch.stack(torch.meshgrid(*(torch.arange(5.0),) * 3, indexing="ij"), -1).reshape(-1, 3)
    assert chamfer_distance(ijk, ijk).item() == 0.0
    t = torch.tensor([0.01, -0.02, 0.02])  # |t| = 0.03, much smaller than the spacing 1
    assert chamfer_distance(ijk, ijk + t).item() == pytest.approx(0.03, abs=1e-5)  # matmul-form cdist: ~1e-6 error
    # Directed means are averaged: b = a plus one far point at distance 3 from a.
    a = torch.zeros(1, 3)
    b = torch.tensor([[0.0, 0, 0], [3.0, 0, 0]])
    assert chamfer_distance(a, b).item() == pytest.approx(0.5 * (0.0 + 1.5))
    assert fscore(ijk, ijk).item() == 1.0
    assert fscore(ijk, ijk + 10).item() == 0.0
    # precision 1, recall 1/2 -> F = 2/3
    assert fscore(a, b, threshold=0.1).item() == pytest.approx(2 / 3)


def test_mesh_vs_voxels_metrics():
    v, f = icosphere(3)
    verts = torch.stack([v * 0.45, v * 0.2 + 0.1])
    gt = voxelize(verts, f)
    m = mesh_vs_voxels_metrics(verts, f, gt)
    assert set(m) == {"iou", "chamfer", "fscore"}
    assert torch.equal(m["iou"], torch.ones(2))
    assert (m["chamfer"] < 1.0 / R).all() and (m["fscore"] > 0.95).all()
    swapped = mesh_vs_voxels_metrics(verts, f, gt.flip(0), n_points=512)
    assert (swapped["iou"] < 0.2).all() and (swapped["chamfer"] > 0.05).all()
    empty = mesh_vs_voxels_metrics(verts[:1], f, torch.zeros(1, R, R, R, dtype=torch.bool))
    assert empty["iou"].item() == 0.0 and math.isnan(empty["chamfer"].item())


def test_bench_voxelize_returns_rate():
    assert bench_voxelize(batch=4, repeats=1) > 0
