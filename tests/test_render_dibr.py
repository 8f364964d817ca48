"""DIB-R-style render (ours): torch reference vs dense oracle, fused kernels vs the reference,
gradcheck, the ``dibr`` backend, and Kaolin's ``dibr_rasterization`` where it is installed."""

from __future__ import annotations

import importlib.util
import math

import pytest
import torch

from recon import cameras, mesh
from recon.ops import rgba_ext
from recon.render import BackendUnavailable, RasterSettings, available_backends, get_renderer
from recon.render.dibr import DibrRenderer
from recon.ops.rgba_dibr_torch import dibr_rgba_torch
from recon.ops.rgba_dense import dibr_rgba_dense
from render_cases import (DTYPES, FWD_TOL, GRAD_RTOL, IMPLS, compare, device_of, kernel, odd_faces, random_triangles,
                          sphere)


def _torch(st: RasterSettings, background=(0.0, 0.0, 0.0)):
    return lambda v, f, c: dibr_rgba_torch(v, f, c, st.image_size, st.sigma, st.cutoff_sq, background)


def _ext(st: RasterSettings, impl: str, background=(0.0, 0.0, 0.0)):
    return lambda v, f, c: rgba_ext.dibr_rgba_ext(v, f, c, st.image_size, st.sigma, st.cutoff_sq, background,
                                                  kind=impl)


# --- the torch reference against the dense oracle -------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1])
def test_torch_matches_dense_random_triangles(seed):
    verts, faces, colours = random_triangles(batch=2, num_faces=8, seed=seed)
    # eps 1e-7: the faces the windowed version drops change alpha by < F * eps.
    st = RasterSettings(image_size=24, sigma=3e-3, eps=1e-7)
    bg = (0.2, 0.5, 0.9)
    dense = lambda v, f, c: dibr_rgba_dense(v, f, c, st.image_size, st.sigma, bg)  # noqa: E731
    fwd, gv, gc, (grad_v, _) = compare(_torch(st, bg), dense, verts, faces, colours)
    assert fwd < 1e-5 and gv < 1e-4 and gc < 1e-10
    assert grad_v[..., 2].abs().max() == 0  # depth only decides visibility


def test_torch_matches_dense_sphere():
    ndc, faces, colours = sphere(2, 2, seed=3, dtype=torch.float64)
    st = RasterSettings(image_size=32, sigma=1e-3, eps=1e-7)
    dense = lambda v, f, c: dibr_rgba_dense(v, f, c, st.image_size, st.sigma)  # noqa: E731
    fwd, gv, gc, _ = compare(_torch(st), dense, ndc, faces, colours)
    assert fwd < 1e-5 and gv < 1e-4 and gc < 1e-10


def test_nearest_face_colour_and_soft_alpha():
    """Overlapping faces: the nearer one's interpolated colour, alpha 1 inside, exp falloff outside."""
    verts = torch.tensor([[[-0.8, -0.8, 3.0], [0.8, -0.8, 3.0], [0.0, 0.8, 3.0],
                           [-0.8, -0.8, 2.0], [0.8, -0.8, 2.0], [0.0, 0.8, 2.0]]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    colours = torch.tensor([[[0, 0, 1.0]] * 3 + [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]], dtype=torch.float64)
    st = RasterSettings(image_size=16, sigma=1e-2, eps=1e-6)
    out = dibr_rgba_torch(verts, faces, colours, st.image_size, st.sigma, st.cutoff_sq, (0.5, 0.5, 0.5))
    px, py = (2 * 8 + 1 - 16) / 16, (16 - 1 - 2 * 9) / 16  # pixel (9, 8)
    w1 = (py + 0.8) / 1.6  # barycentric weight of the top vertex
    w0 = (0.8 - px) / 1.6 - w1 / 2
    expected = torch.tensor([w0, 1 - w0 - w1, w1, 1.0], dtype=torch.float64)
    torch.testing.assert_close(out[0, :, 9, 8], expected)
    # A pixel left of the triangles: background colour, alpha from its distance to the left edge.
    px, py = (2 * 3 + 1 - 16) / 16, (16 - 1 - 2 * 8) / 16  # pixel (8, 3)
    e = torch.tensor([0.8, 1.6], dtype=torch.float64)  # edge from (-0.8, -0.8) to (0, 0.8)
    d = torch.tensor([px + 0.8, py + 0.8], dtype=torch.float64)
    t = float((d @ e) / (e @ e))
    assert 0 < t < 1  # the closest point is inside the edge
    d2 = float((d - t * e).square().sum())
    alpha = 1 - (1 - math.exp(-d2 / st.sigma)) ** 2  # both faces share that edge
    torch.testing.assert_close(out[0, :, 8, 3], torch.tensor([0.5, 0.5, 0.5, alpha], dtype=torch.float64))


def test_gradcheck_torch_reference():
    verts, faces, colours = random_triangles(batch=1, num_faces=3, seed=2)
    st = RasterSettings(image_size=8, sigma=2e-2, eps=1e-3)
    assert torch.autograd.gradcheck(
        lambda v, c: dibr_rgba_torch(v, faces, c, st.image_size, st.sigma, st.cutoff_sq, (0.3, 0.3, 0.3)),
        (verts.requires_grad_(True), colours.requires_grad_(True)), eps=1e-6, atol=1e-5)


# --- the fused kernels against the torch reference -------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("size,sigma", [(32, 1e-3), (64, 1e-4)])
def test_kernel_matches_torch_sphere(impl, dtype, size, sigma):
    kernel(impl)
    ndc, faces, colours = sphere(3, 2, seed=size, dtype=dtype, device=device_of(impl))
    st = RasterSettings(image_size=size, sigma=sigma)
    bg = (0.1, 0.2, 0.3)
    fwd, gv, gc, (grad_v, _) = compare(_ext(st, impl, bg), _torch(st, bg), ndc, faces, colours)
    assert fwd <= FWD_TOL[dtype] and gv <= GRAD_RTOL and gc <= GRAD_RTOL
    assert grad_v[..., 2].abs().max() == 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_kernel_zero_area_face(impl, dtype):
    """A zero-area face never covers a pixel: alpha only, with a finite gradient (the other odd faces:
    test_render_rgba_kernels.py)."""
    kernel(impl)
    verts, faces, colours = odd_faces(dtype, device_of(impl))
    st = RasterSettings(image_size=24, sigma=3e-3)
    fwd, _, _, (grad_v, _) = compare(_ext(st, impl), _torch(st), verts, faces[3:4], colours)
    assert fwd <= FWD_TOL[dtype] and torch.isfinite(grad_v).all()


def test_pixel_on_a_zero_area_face_stays_finite():
    """d = 0 from an uncovered pixel (a collapsed face through a pixel centre): alpha 1, finite grads."""
    kernel("cpp")
    c = (2 * 4 + 1 - 8) / 8  # pixel (3, 4) centre x; y of row 3 is (8 - 1 - 6) / 8
    verts = torch.tensor([[[c - 0.3, 1 / 8, 2.0], [c + 0.3, 1 / 8, 2.0], [c, 1 / 8, 2.0]]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2]])
    colours = torch.ones(1, 3, 3, dtype=torch.float64)
    st = RasterSettings(image_size=8, sigma=1e-2)
    for render in (_torch(st), _ext(st, "cpp")):
        v = verts.clone().requires_grad_(True)
        out = render(v, faces, colours)
        out[:, 3].sum().backward()
        assert out[0, 3, 3, 4] == 1.0 and torch.isfinite(v.grad).all()


def test_cpp_kernel_input_checks():
    ext = kernel("cpp")
    ndc, faces, colours = sphere(1, 1, seed=0, dtype=torch.float32)
    img, log_sum, nearest = ext.dibr_forward(ndc, faces, colours, 16, 1e-3, 1e-2, [0.0, 0.0, 0.0])
    with pytest.raises(RuntimeError, match="grad_image must be"):
        ext.dibr_backward(torch.ones_like(img[:, :3]), ndc, faces, colours, log_sum, nearest, 16, 1e-3, 1e-2)
    with pytest.raises(RuntimeError, match="sigma must be positive"):
        ext.dibr_forward(ndc, faces, colours, 16, 0.0, 1e-2, [0.0, 0.0, 0.0])


# --- the dibr backend ----------------------------------------------------------------------------

@pytest.mark.parametrize("impl", ["torch", "cpp"])
def test_dibr_backend(impl):
    if impl == "cpp":
        kernel("cpp")
    r = get_renderer("dibr", impl=impl, image_size=32, sigma=1e-3)
    assert isinstance(r, DibrRenderer) and r.name == "dibr" and r.impl == impl
    v, f = mesh.icosphere(2)
    verts = (0.4 * v)[None].repeat(2, 1, 1).requires_grad_(True)
    colours = torch.rand(2, v.shape[0], 3, generator=torch.Generator().manual_seed(0))
    az = cameras.view_azimuths(torch.tensor([0, 7]))
    sil = r.silhouettes(verts, f, az)
    rgba = r.rgba(verts, f, az, colours)
    assert sil.shape == (2, 32, 32) and rgba.shape == (2, 4, 32, 32)
    torch.testing.assert_close(rgba[:, 3], sil, rtol=0, atol=0)
    assert sil[:, 12:20, 12:20].min() == 1.0 and sil[:, 0, 0].max() < 1e-6
    sil.mean().backward()
    assert torch.isfinite(verts.grad).all() and verts.grad.abs().sum() > 0


def test_dibr_backend_registry():
    assert available_backends("cpu")["dibr"] is None
    assert get_renderer("dibr").impl in ("cpp", "torch")  # auto: the kernel when it builds
    with pytest.raises(ValueError, match="unknown dibr impl"):
        get_renderer("dibr", impl="fortran")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="CUDA"):
            get_renderer("dibr", impl="cuda")


# --- Kaolin ------------------------------------------------------------------------------------------

HAS_KAOLIN = importlib.util.find_spec("kaolin") is not None


@pytest.mark.cuda
@pytest.mark.skipif(not (HAS_KAOLIN and torch.cuda.is_available()),
                    reason="needs kaolin and a CUDA device (kaolin.render.mesh.dibr_rasterization is CUDA-only)")
def test_matches_kaolin_dibr_rasterization():
    from kaolin.render.mesh import dibr_rasterization

    ndc, faces, colours = sphere(2, 3, seed=1, dtype=torch.float32, device="cuda")
    st = RasterSettings(image_size=64, sigma=1e-4, eps=1e-6)
    ours = dibr_rgba_torch(ndc, faces, colours, st.image_size, st.sigma, st.cutoff_sq)
    fv = ndc[:, faces]  # (B, F, 3, 3)
    b, nf = fv.shape[:2]
    features, soft_mask, face_idx = dibr_rasterization(
        st.image_size, st.image_size, -fv[..., 2].contiguous(), fv[..., :2].contiguous(),
        colours[:, faces].contiguous(), torch.ones(b, nf, device="cuda"), sigmainv=1.0 / st.sigma,
        boxlen=math.sqrt(st.cutoff_sq), knum=300, multiplier=1000.0)
    covered_k, covered_o = face_idx >= 0, ours[:, 3] == 1.0
    both = covered_k & covered_o
    assert (covered_k != covered_o).float().mean() < 0.01  # only pixel centres on a silhouette edge
    # Colours agree wherever both pick the same face; the pick may differ only where two faces cover a
    # pixel at nearly the same depth (Kaolin interpolates depth linearly in screen space).
    colour_diff = (ours.permute(0, 2, 3, 1)[..., :3][both] - features[both]).abs().amax(-1)
    assert (colour_diff <= 1e-4).float().mean() > 0.99
    # Soft alpha where neither covers the pixel: distances only, no choice involved.
    neither = ~covered_k & ~covered_o
    torch.testing.assert_close(ours[:, 3][neither], soft_mask[neither], atol=1e-4, rtol=0)
