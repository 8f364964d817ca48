"""Tests for recon.losses: hand-computed values, SoftRas semantics, finite gradients."""

from __future__ import annotations

import math

import pytest
import torch

from recon.losses import FlattenLoss, LaplacianLoss, iou_loss, multiview_iou_loss
from recon.mesh import icosphere

# A flat square fan: centre vertex 4 at the origin, ring (1,0,0), (0,1,0), (-1,0,0), (0,-1,0).
FAN_VERTS = torch.tensor([[1.0, 0, 0], [0, 1, 0], [-1, 0, 0], [0, -1, 0], [0, 0, 0]])
FAN_FACES = torch.tensor([[4, 0, 1], [4, 1, 2], [4, 2, 3], [4, 3, 0]])


def test_iou_loss_identical_and_disjoint_masks():
    m = torch.zeros(2, 4, 4)
    m[:, :2] = 1
    assert iou_loss(m, m).item() == pytest.approx(0.0, abs=1e-6)
    assert iou_loss(m, 1 - m).item() == pytest.approx(1.0, abs=1e-6)


def test_iou_loss_half_overlap_exact():
    pred = torch.zeros(1, 4, 4)
    pred[:, :, :2] = 1  # left half, 8 pixels
    target = torch.zeros(1, 4, 4)
    target[:, :2, :] = 1  # top half, 8 pixels; intersection 4, union 12
    assert iou_loss(pred, target, eps=0.0).item() == pytest.approx(2.0 / 3.0, abs=1e-7)


def test_iou_loss_soft_values_and_batch_mean():
    pred = torch.tensor([[[0.5, 0.5]], [[1.0, 0.0]]])
    target = torch.tensor([[[1.0, 0.0]], [[1.0, 0.0]]])
    # object 0: inter 0.5, union (0.5 + 1 - 0.5) + (0.5 + 0 - 0) = 1.5 -> 1/3; object 1: 1.0
    assert iou_loss(pred, target, eps=0.0).item() == pytest.approx(1 - (1 / 3 + 1.0) / 2, abs=1e-7)


def test_iou_loss_shape_mismatch():
    with pytest.raises(ValueError, match="differ"):
        iou_loss(torch.zeros(1, 4, 4), torch.zeros(1, 4, 5))


def test_multiview_is_mean_of_four_with_softras_pairing():
    g = torch.Generator().manual_seed(0)
    r = [torch.rand(3, 8, 8, generator=g) for _ in range(4)]
    ta, tb = (torch.rand(3, 8, 8, generator=g) > 0.5).float(), (torch.rand(3, 8, 8, generator=g) > 0.5).float()
    expected = (iou_loss(r[0], ta) + iou_loss(r[1], ta) + iou_loss(r[2], tb) + iou_loss(r[3], tb)) / 4
    assert multiview_iou_loss(r, ta, tb).item() == pytest.approx(expected.item(), abs=1e-7)
    # Renders 0, 1 belong to view a: perfect renders there and blank ones at b give 0.5.
    blank = torch.zeros_like(ta)
    assert multiview_iou_loss([ta, ta, blank, blank], ta, tb).item() == pytest.approx(0.5, abs=1e-5)
    with pytest.raises(ValueError, match="4 renders"):
        multiview_iou_loss(r[:3], ta, tb)


def test_laplacian_triangle_hand_computed():
    faces = torch.tensor([[0, 1, 2]])
    verts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0, 1, 0]]])
    # v0: (0.5,0.5,0)-0 -> 0.5; v1: (0,0.5,0)-(1,0,0) -> 1.25; v2: (0.5,0,0)-(0,1,0) -> 1.25
    out = LaplacianLoss(3, faces)(verts)
    assert out.shape == (1,)
    assert out.item() == pytest.approx(3.0, abs=1e-6)


def test_laplacian_fan_centre_at_mean_contributes_zero():
    loss = LaplacianLoss(5, FAN_FACES)
    # Each ring vertex: neighbours centre + 2 ring neighbours, mean 0 -> term 1; centre term 0.
    assert loss(FAN_VERTS[None]).item() == pytest.approx(4.0, abs=1e-6)
    lx = loss.laplacian @ FAN_VERTS
    assert lx[4].abs().max().item() == 0.0
    # Translation invariant, batched, and constant meshes give 0.
    batch = torch.stack([FAN_VERTS + torch.tensor([0.3, -2.0, 1.0]), torch.ones(5, 3)])
    assert torch.allclose(loss(batch), torch.tensor([4.0, 0.0]), atol=1e-5)


def test_flatten_flat_patch_is_zero():
    assert FlattenLoss(FAN_FACES)(FAN_VERTS[None]).item() == pytest.approx(0.0, abs=1e-10)
    # A subdivided planar grid (open mesh) in a tilted plane.
    n = 4
    i, j = torch.meshgrid(torch.arange(n + 1.0), torch.arange(n + 1.0), indexing="ij")
    verts = torch.stack([i, j, 0.3 * i - 0.7 * j], -1).reshape(-1, 3) / n
    faces = []
    for a in range(n):
        for b in range(n):
            v00, v01 = a * (n + 1) + b, a * (n + 1) + b + 1
            v10, v11 = v00 + n + 1, v01 + n + 1
            faces += [[v00, v10, v11], [v00, v11, v01]]
    faces = torch.tensor(faces)
    assert FlattenLoss(faces)(verts[None]).item() == pytest.approx(0.0, abs=1e-7)  # eps bias only
    assert FlattenLoss(faces, eps=1e-12)(verts[None].double()).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("phi_deg", [90.0, 60.0, 150.0])
def test_flatten_folded_pair_exact(phi_deg):
    phi = math.radians(phi_deg)
    verts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [0.5, 1, 0], [0.3, math.cos(phi), math.sin(phi)]]],
                         dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [1, 0, 3]])
    # Perpendiculars to the edge: (0,1,0) and (0,cos phi,sin phi) -> cos = cos(phi).
    expected = (math.cos(phi) + 1) ** 2
    assert FlattenLoss(faces, eps=1e-12)(verts).item() == pytest.approx(expected, abs=1e-9)
    assert FlattenLoss(faces)(verts).item() == pytest.approx(expected, abs=1e-5)  # default eps: tiny bias


def test_flatten_matches_face_normal_formula_on_icosphere():
    v, f = icosphere(3)
    g = torch.Generator().manual_seed(1)
    verts = (v * (1 + 0.2 * torch.rand(642, 1, generator=g))).double()[None]
    loss = FlattenLoss(f, eps=1e-12)
    e = loss.edges
    a = verts[0, e[:, 1]] - verts[0, e[:, 0]]
    n1 = torch.linalg.cross(a, verts[0, e[:, 2]] - verts[0, e[:, 0]])
    n2 = torch.linalg.cross(a, verts[0, e[:, 3]] - verts[0, e[:, 0]])
    cos = (n1 * n2).sum(-1) / (n1.norm(dim=-1) * n2.norm(dim=-1))
    assert e.shape == (1920, 4)
    assert loss(verts).item() == pytest.approx(((cos + 1) ** 2).sum().item(), rel=1e-9)


def test_gradients_finite_on_icosphere_and_degenerate_meshes():
    v, f = icosphere(3)
    lap, flat = LaplacianLoss(642, f), FlattenLoss(f)
    verts = torch.stack([v * 0.5, torch.zeros_like(v), v * torch.tensor([1.0, 0.0, 1.0])]).requires_grad_()
    total = lap(verts).sum() + flat(verts).sum()
    total.backward()
    assert torch.isfinite(total) and torch.isfinite(verts.grad).all()
    pred = torch.rand(2, 8, 8, requires_grad=True)
    iou_loss(pred, torch.zeros(2, 8, 8)).backward()
    assert torch.isfinite(pred.grad).all()


def flatten_reference(verts: torch.Tensor, edges: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """FlattenLoss written vertex-major, gather by gather ((B, E, 3) per edge vertex): the plain form."""
    v0, v1, v2, v3 = (verts[:, edges[:, k]] for k in range(4))
    a = v1 - v0
    a2 = (a * a).sum(-1, keepdim=True) + eps
    c1 = (v2 - v0) - (((v2 - v0) * a).sum(-1, keepdim=True) / a2) * a
    c2 = (v3 - v0) - (((v3 - v0) * a).sum(-1, keepdim=True) / a2) * a
    n1, n2 = ((c1 * c1).sum(-1) + eps * eps).sqrt(), ((c2 * c2).sum(-1) + eps * eps).sqrt()
    return ((c1 * c2).sum(-1) / (n1 * n2 + eps) + 1).pow(2).sum(-1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_flatten_agrees_with_the_reference_values_and_gradients(dtype):
    v, f = icosphere(3)
    g = torch.Generator().manual_seed(3)
    verts = (v[None] * (0.2 + 0.3 * torch.rand(5, 642, 1, generator=g)) + 0.02 * torch.randn(5, 642, 3, generator=g))
    verts[4, :10] = verts[4, 10]  # degenerate edges too
    verts = verts.to(dtype).requires_grad_()
    flat = FlattenLoss(f)
    weights = torch.rand(5, generator=g).to(dtype)
    got = flat(verts)
    want = flatten_reference(verts, flat.edges)
    (grad_got,) = torch.autograd.grad((got * weights).sum(), verts)
    (grad_want,) = torch.autograd.grad((want * weights).sum(), verts)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got, want, rtol=tol, atol=tol)
    torch.testing.assert_close(grad_got, grad_want, rtol=tol, atol=tol * grad_want.abs().max().item())
