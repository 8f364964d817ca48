"""The pure-PyTorch soft rasterizer against the dense oracle, plus the renderer registry."""

from __future__ import annotations

import pytest
import torch

from recon import cameras, mesh
from recon.render import BACKENDS, RasterSettings, get_renderer
from recon.render.softras import IMPLS, SoftRasRenderer
from recon.ops.silhouette_dense import soft_silhouette_dense
from recon.ops.silhouette_torch import soft_silhouette_torch
from recon.ops.window_pairs import face_windows
from render_cases import sphere


def _random_meshes(batch: int, num_faces: int, seed: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent random triangles in front of the camera: verts (B, 3F, 3), faces (F, 3)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(batch, num_faces, 1, 2, generator=g, dtype=dtype) * 1.4 - 0.7
    xy = centres + (torch.rand(batch, num_faces, 3, 2, generator=g, dtype=dtype) - 0.5) * 0.6
    z = 1.0 + torch.rand(batch, num_faces, 3, 1, generator=g, dtype=dtype)
    verts = torch.cat([xy, z], dim=-1).reshape(batch, num_faces * 3, 3)
    return verts, torch.arange(num_faces * 3).reshape(num_faces, 3)


def _sphere(batch: int, subdivisions: int, seed: int, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Randomly deformed icospheres projected at random standard views: verts_ndc (B, V, 3), faces."""
    return sphere(batch, subdivisions, seed, dtype)[:2]


def _grad_rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


@pytest.mark.parametrize("seed", [0, 1])
def test_torch_matches_dense_random_triangles(seed):
    verts, faces = _random_meshes(batch=2, num_faces=6, seed=seed)
    verts.requires_grad_(True)
    # eps 1e-6: the pairs the windowed version drops change the result by < F * eps.
    st = RasterSettings(image_size=24, sigma=3e-3, eps=1e-6)
    ref = soft_silhouette_dense(verts, faces, st.image_size, st.sigma)
    out = soft_silhouette_torch(verts, faces, st.image_size, st.sigma, st.cutoff_sq)
    assert out.shape == (2, 24, 24)
    assert (out - ref).abs().max() < 1e-3
    w = torch.randn_like(ref)
    g_ref, = torch.autograd.grad((ref * w).sum(), verts)
    g_out, = torch.autograd.grad((out * w).sum(), verts)
    assert _grad_rel(g_out, g_ref) < 1e-2
    assert g_out[..., 2].abs().max() == 0  # depth only decides visibility


def test_torch_matches_dense_sphere_default_settings():
    ndc, faces = _sphere(batch=2, subdivisions=2, seed=3)
    ndc.requires_grad_(True)
    st = RasterSettings(image_size=32, sigma=1e-3, eps=1e-6)
    ref = soft_silhouette_dense(ndc, faces, st.image_size, st.sigma)
    out = soft_silhouette_torch(ndc, faces, st.image_size, st.sigma, st.cutoff_sq)
    assert (out - ref).abs().max() < 1e-3
    w = torch.randn_like(ref)
    g_ref, = torch.autograd.grad((ref * w).sum(), ndc)
    g_out, = torch.autograd.grad((out * w).sum(), ndc)
    assert _grad_rel(g_out, g_ref) < 1e-2


def test_no_cutoff_is_exactly_dense():
    verts, faces = _random_meshes(batch=1, num_faces=4, seed=5)
    out = soft_silhouette_torch(verts, faces, 16, 1e-2, cutoff_sq=100.0)
    ref = soft_silhouette_dense(verts, faces, 16, 1e-2)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


def test_gradcheck_two_faces():
    g = torch.Generator().manual_seed(0)
    verts = torch.cat([torch.rand(1, 4, 2, generator=g, dtype=torch.float64) * 1.2 - 0.6,
                       torch.full((1, 4, 1), 2.0, dtype=torch.float64)], dim=-1).requires_grad_(True)
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]])
    st = RasterSettings(image_size=8, sigma=2e-2)
    assert torch.autograd.gradcheck(
        lambda v: soft_silhouette_torch(v, faces, st.image_size, st.sigma, st.cutoff_sq), (verts,),
        eps=1e-6, atol=1e-5)


def test_range_and_empty_image():
    ndc, faces = _sphere(batch=3, subdivisions=1, seed=1)
    out = soft_silhouette_torch(ndc, faces, 32, 1e-4, RasterSettings().cutoff_sq)
    assert out.min() >= 0 and out.max() <= 1
    far = ndc.clone()
    far[..., 0] += 10.0  # everything off screen
    assert soft_silhouette_torch(far, faces, 32, 1e-4, RasterSettings().cutoff_sq).abs().max() == 0


def test_big_triangle_orientation():
    """A big triangle: ~1 inside, ~0 far away; apex up (row 0 is the top, column 0 the left)."""
    verts = torch.tensor([[[-0.8, -0.8, 1.0], [0.8, -0.8, 1.0], [0.0, 0.8, 1.0]]])
    faces = torch.tensor([[0, 1, 2]])
    s, st = 32, RasterSettings(image_size=32)
    for fn in (lambda: soft_silhouette_torch(verts, faces, s, st.sigma, st.cutoff_sq),
               lambda: soft_silhouette_dense(verts, faces, s, st.sigma)):
        sil = fn()[0]
        assert sil[s // 2, s // 2] > 0.999          # centre
        assert sil[s - 6, 8] > 0.999                # bottom-left, inside near the base
        assert sil[3, 3] < 1e-6 and sil[3, s - 4] < 1e-6  # top corners, beside the apex
        assert sil[0, 0] < 1e-6 and sil[s - 1, s - 1] < 1e-3


def test_faces_behind_camera_and_degenerate_faces_are_skipped():
    verts = torch.tensor([[[-0.5, -0.5, -1.0], [0.5, -0.5, 1.0], [0.0, 0.5, 1.0],   # one vertex behind
                           [-0.5, 0.0, 1.0], [0.0, 0.0, 1.0], [0.5, 0.0, 1.0]]],    # zero area
                         dtype=torch.float64, requires_grad=True)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    st = RasterSettings(image_size=16, sigma=1e-3, eps=1e-8)
    out = soft_silhouette_torch(verts, faces, st.image_size, st.sigma, st.cutoff_sq)
    ref = soft_silhouette_dense(verts, faces, st.image_size, st.sigma)
    assert torch.isfinite(out).all()
    assert (out - ref).abs().max() < 1e-6
    # The degenerate face is never "inside": at most D = 1/2 on its segment.
    assert out.max() <= 0.5 + 1e-12
    out.sum().backward()
    assert torch.isfinite(verts.grad).all() and verts.grad[0, :3].abs().max() == 0


def test_face_windows_cover_the_cutoff_disc():
    s, cutoff = 16, 0.01
    fxy = torch.tensor([[[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])  # a point face at the origin
    c0, c1, r0, r1 = face_windows(fxy, torch.tensor([True]), s, cutoff)
    xs = (2 * torch.arange(s) + 1 - s) / s
    inside = (xs.abs() <= cutoff ** 0.5).nonzero()[:, 0]
    assert (int(c0), int(c1)) == (int(inside.min()), int(inside.max()))
    assert (int(r0), int(r1)) == (int(inside.min()), int(inside.max()))
    c0, c1, _, _ = face_windows(fxy + 100.0, torch.tensor([True]), s, cutoff)
    assert int(c1) < int(c0)  # off screen: empty


def test_registry_unknown_backend_lists_valid():
    with pytest.raises(ValueError) as e:
        get_renderer("nope")
    for name in BACKENDS:
        assert name in str(e.value)


def test_unknown_impl_lists_valid():
    with pytest.raises(ValueError) as e:
        get_renderer("softras", impl="fortran")
    for impl in ("auto",) + IMPLS:
        assert impl in str(e.value)


def test_torch_renderer_end_to_end():
    r = get_renderer("softras", impl="torch", image_size=32, sigma=1e-4)
    assert isinstance(r, SoftRasRenderer) and r.name == "softras" and r.impl == "torch"
    v, f = mesh.icosphere(2)
    verts = (0.4 * v)[None].repeat(2, 1, 1).requires_grad_(True)
    sil = r.silhouettes(verts, f, cameras.view_azimuths(torch.tensor([0, 6])))
    # Interior pixels close to a shared edge stay a little below 1 (SoftRas' soft seams).
    assert sil.shape == (2, 32, 32) and sil[:, 12:20, 12:20].mean() > 0.95 and sil[:, 0, 0].max() < 1e-6
    sil.mean().backward()
    assert torch.isfinite(verts.grad).all() and verts.grad.abs().sum() > 0
    r.set_sigma(3e-5)
    assert r.settings.sigma == 3e-5
