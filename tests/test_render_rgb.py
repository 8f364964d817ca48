"""SoftRas colour (soft z-buffer): torch reference vs dense oracle, fused kernels vs the reference,
gradcheck, and the ``rgba`` render of the renderer interface."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from recon import cameras, mesh
from recon.ops import rgba_ext
from recon.render import BackendUnavailable, RasterSettings, Renderer, get_renderer
from bench_ops import bench_rgba, rgba_ratios
from recon.ops.rgba import resolve_impl, soft_rgba
from recon.ops.rgba_dense import soft_rgba_dense
from recon.ops.rgba_soft_torch import soft_rgba_torch
from recon.ops.silhouette_torch import soft_silhouette_torch
from render_cases import (DTYPES, FWD_TOL, GRAD_RTOL, IMPLS, compare, compile_cuda_source, device_of,
                          kernel, odd_faces, random_triangles, sphere)


def _torch(st: RasterSettings, **kw):
    return lambda v, f, c: soft_rgba_torch(v, f, c, st.image_size, st.sigma, st.cutoff_sq, **kw)


def _dense(st: RasterSettings, **kw):
    return lambda v, f, c: soft_rgba_dense(v, f, c, st.image_size, st.sigma, st.cutoff_sq, **kw)


def _ext(st: RasterSettings, impl: str, **kw):
    return lambda v, f, c: rgba_ext.soft_rgba_ext(v, f, c, st.image_size, st.sigma, st.cutoff_sq, kind=impl, **kw)


# --- the torch reference against the dense oracle -------------------------------------------------

@pytest.mark.parametrize("gamma", [1e-4, 3e-2])
@pytest.mark.parametrize("seed", [0, 1])
def test_torch_matches_dense_random_triangles(seed, gamma):
    verts, faces, colours = random_triangles(batch=2, num_faces=8, seed=seed)
    st = RasterSettings(image_size=24, sigma=3e-3)
    kw = dict(gamma=gamma, background=(0.2, 0.5, 0.9))
    fwd, gv, gc, _ = compare(_torch(st, **kw), _dense(st, **kw), verts, faces, colours)
    assert fwd < 1e-10 and gv < 1e-8 and gc < 1e-8


def test_torch_matches_dense_sphere_and_alpha_is_the_silhouette():
    ndc, faces, colours = sphere(2, 2, seed=3, dtype=torch.float64)
    st = RasterSettings(image_size=32, sigma=1e-3)
    fwd, gv, gc, (grad_v, _) = compare(_torch(st), _dense(st), ndc, faces, colours)
    assert fwd < 1e-10 and gv < 1e-8 and gc < 1e-8
    assert grad_v[..., 2].abs().max() > 0  # depth enters the colour weights
    out = soft_rgba_torch(ndc, faces, colours, st.image_size, st.sigma, st.cutoff_sq)
    sil = soft_silhouette_torch(ndc, faces, st.image_size, st.sigma, st.cutoff_sq)
    assert out.shape == (2, 4, 32, 32)
    torch.testing.assert_close(out[:, 3], sil, rtol=0, atol=1e-12)


def test_background_and_depth_order():
    """Empty pixels show the background; where two faces overlap, the nearer one's colour wins."""
    verts = torch.tensor([[[-0.8, -0.8, 2.0], [0.8, -0.8, 2.0], [0.0, 0.8, 2.0],
                           [-0.8, -0.8, 3.0], [0.8, -0.8, 3.0], [0.0, 0.8, 3.0]]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    colours = torch.tensor([[[1.0, 0, 0]] * 3 + [[0, 0, 1.0]] * 3], dtype=torch.float64)
    st = RasterSettings(image_size=16, sigma=1e-4)
    for order in (faces, faces.flip(0)):
        out = soft_rgba_torch(verts, order, colours, st.image_size, st.sigma, st.cutoff_sq, background=(0, 1.0, 0))
        torch.testing.assert_close(out[0, :3, 9, 8], torch.tensor([1.0, 0, 0], dtype=torch.float64))
        torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([0, 1.0, 0, 0], dtype=torch.float64))
    # Out of [near, far]: no colour (the background shows through), the silhouette is unchanged.
    out = soft_rgba_torch(verts, faces, colours, st.image_size, st.sigma, st.cutoff_sq, near=0.5, far=1.5)
    assert out[0, :3].abs().max() == 0 and out[0, 3, 9, 8] > 0.99


def test_gradcheck_torch_reference():
    verts, faces, colours = random_triangles(batch=1, num_faces=2, seed=4)
    st = RasterSettings(image_size=8, sigma=2e-2, eps=1e-3)
    assert torch.autograd.gradcheck(
        lambda v, c: soft_rgba_torch(v, faces, c, st.image_size, st.sigma, st.cutoff_sq, gamma=5e-2,
                                     background=(0.3, 0.3, 0.3)),
        (verts.requires_grad_(True), colours.requires_grad_(True)), eps=1e-6, atol=1e-5)


def test_bad_inputs_are_one_line_errors():
    ndc, faces, colours = sphere(1, 1, seed=0, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"colours must be \(B, V, C\)"):
        soft_rgba_torch(ndc, faces, colours[:, :-1], 16, 1e-3, 1e-2)
    with pytest.raises(ValueError, match="background must have 3 values"):
        soft_rgba_torch(ndc, faces, colours, 16, 1e-3, 1e-2, background=(0.0, 0.0))
    with pytest.raises(ValueError, match="unknown rgba impl"):
        resolve_impl("fortran", torch.device("cpu"))


# --- the fused kernels against the torch reference -------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("size,sigma,gamma", [(32, 1e-3, 1e-4), (64, 1e-4, 1e-4), (32, 1e-3, 1e-2)])
def test_kernel_matches_torch_sphere(impl, dtype, size, sigma, gamma):
    kernel(impl)
    ndc, faces, colours = sphere(3, 2, seed=size, dtype=dtype, device=device_of(impl))
    st = RasterSettings(image_size=size, sigma=sigma)
    kw = dict(gamma=gamma, background=(0.1, 0.2, 0.3))
    fwd, gv, gc, _ = compare(_ext(st, impl, **kw), _torch(st, **kw), ndc, faces, colours)
    assert fwd <= FWD_TOL[dtype] and gv <= GRAD_RTOL and gc <= GRAD_RTOL


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpp_baseline_simd_matches_torch(dtype, monkeypatch):
    """The CPU kernel is compiled for baseline x86-64 and for AVX2; check the one not picked here too."""
    ext = kernel("cpp")
    monkeypatch.setenv("RECON_SOFTRAS_SIMD", "baseline")
    assert ext.cpu_simd() == "baseline"
    ndc, faces, colours = sphere(2, 2, seed=11, dtype=dtype)
    st = RasterSettings(image_size=32, sigma=1e-3)
    fwd, gv, gc, _ = compare(_ext(st, "cpp"), _torch(st), ndc, faces, colours)
    assert fwd <= FWD_TOL[dtype] and gv <= GRAD_RTOL and gc <= GRAD_RTOL


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_kernel_zero_area_face(impl, dtype):
    """A zero-area face adds to alpha only (the other odd faces: test_render_rgba_kernels.py); its
    per-vertex gradient is a rounding tie (see test_render_ext.py), so compare values only."""
    kernel(impl)
    verts, faces, colours = odd_faces(dtype, device_of(impl))
    st = RasterSettings(image_size=24, sigma=3e-3)
    fwd, _, _, _ = compare(_ext(st, impl), _torch(st), verts, faces[3:4], colours)
    assert fwd <= FWD_TOL[dtype]
    out = rgba_ext.soft_rgba_ext(verts, faces[3:4], colours, st.image_size, st.sigma, st.cutoff_sq, kind=impl)
    assert out[:, :3].abs().max() == 0  # no colour from a face without area (black background)


@pytest.mark.parametrize("channels", [0, 1, 5])
def test_cpp_any_number_of_channels(channels):
    kernel("cpp")
    ndc, faces, colours = sphere(2, 1, seed=6, dtype=torch.float64, channels=channels)
    st = RasterSettings(image_size=20, sigma=2e-3)
    bg = tuple(0.1 * i for i in range(channels))
    out = rgba_ext.soft_rgba_ext(ndc, faces, colours, st.image_size, st.sigma, st.cutoff_sq, background=bg)
    ref = soft_rgba_torch(ndc, faces, colours, st.image_size, st.sigma, st.cutoff_sq, background=bg)
    assert out.shape == (2, channels + 1, 20, 20)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)


def test_cpp_kernel_input_checks():
    ext = kernel("cpp")
    ndc, faces, colours = sphere(1, 1, seed=0, dtype=torch.float32)
    args = (16, 1e-3, 1e-2, 1e-4, 1.0, 100.0, 1e-3, [0.0, 0.0, 0.0])
    with pytest.raises(RuntimeError, match="int64"):
        ext.soft_forward(ndc, faces.int(), colours, *args)
    with pytest.raises(RuntimeError, match="dtype of verts"):
        ext.soft_forward(ndc, faces, colours.double(), *args)
    with pytest.raises(RuntimeError, match="background must have 3"):
        ext.soft_forward(ndc, faces, colours, *args[:-1], [0.0])
    with pytest.raises(RuntimeError, match="gamma must be positive"):
        ext.soft_forward(ndc, faces, colours, 16, 1e-3, 1e-2, 0.0, 1.0, 100.0, 1e-3, [0.0, 0.0, 0.0])
    assert ext.with_cuda is False


# --- the renderer interface --------------------------------------------------------------------

def test_softras_renderer_rgba():
    kernel("cpp")
    v, f = mesh.icosphere(2)
    g = torch.Generator().manual_seed(0)
    verts = (0.4 * v)[None].repeat(2, 1, 1)
    colours = torch.rand(2, v.shape[0], 3, generator=g)
    az = cameras.view_azimuths(torch.tensor([0, 5]))
    out = {}
    for impl in ("torch", "cpp"):
        r = get_renderer("softras", impl=impl, image_size=32)
        out[impl] = r.rgba(verts, f, az, colours)
        assert out[impl].shape == (2, 4, 32, 32)
        torch.testing.assert_close(out[impl][:, 3], r.silhouettes(verts, f, az), atol=1e-4, rtol=0)
    torch.testing.assert_close(out["cpp"], out["torch"], atol=FWD_TOL[torch.float32], rtol=0)
    # Options reach the render through the settings.
    r = get_renderer("softras", impl="cpp", image_size=32, background=(1.0, 1.0, 1.0))
    assert r.rgba(verts, f, az, colours)[:, :3, 0, 0].min() == 1.0
    with pytest.raises(ValueError, match=r"colours must be \(B, V, 3\)"):
        r.rgba(verts, f, az, colours[..., :2])


def test_backend_without_rgba_says_so():
    class SilhouetteOnly(Renderer):
        name = "plain"

        def rasterize_ndc(self, verts_ndc, faces):
            return verts_ndc.new_zeros(verts_ndc.shape[0], 8, 8)

    v, f = mesh.icosphere(1)
    with pytest.raises(BackendUnavailable, match="plain backend has no rgba render"):
        SilhouetteOnly().rgba(v[None], f, torch.zeros(1), torch.zeros(1, v.shape[0], 3))


def test_soft_rgba_impl_follows_device():
    kernel("cpp")
    ndc, faces, colours = sphere(1, 1, seed=2, dtype=torch.float32)
    st = RasterSettings(image_size=16, sigma=1e-3)
    assert resolve_impl("auto", torch.device("cpu")) == "cpp"
    with pytest.raises(ValueError, match="runs on cuda tensors"):
        soft_rgba(ndc, faces, colours, st, impl="cuda")


def test_bench_rgba_records():
    kernel("cpp")
    records = bench_rgba(batches=(1,), repeats=1, impls=("torch", "cpp"), image_size=16)
    assert {(r.render, r.impl) for r in records} == {("soft", "torch"), ("soft", "cpp"), ("dibr", "torch"),
                                                      ("dibr", "cpp")}
    assert all(r.fwd_ms > 0 and r.fwdbwd_ms > 0 and r.batch == 1 for r in records)
    assert set(rgba_ratios(records)) == {"soft torch/cpp@1", "dibr torch/cpp@1"}


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not found")
def test_cuda_source_compiles_with_nvcc(tmp_path):
    """Compile-only check of rgba_cuda.cu (runs without a GPU)."""
    csrc = Path(rgba_ext.__file__).parent / "csrc"
    res = compile_cuda_source(csrc / "rgba" / "rgba_cuda.cu", [csrc / "rgba", csrc / "common"], tmp_path)
    assert res.returncode == 0, res.stderr[-4000:]
    assert (tmp_path / "out.o").stat().st_size > 0


def test_bad_face_index_checked_by_the_wrapper_in_debug_mode(monkeypatch):
    """The RGBA kernels no longer read faces back to the host; RECON_DEBUG_CHECKS=1 checks them in
    the wrapper (recon.ops.checks)."""
    kernel("cpp")
    ndc, faces, colours = sphere(1, 1, seed=0, dtype=torch.float32)
    monkeypatch.setenv("RECON_DEBUG_CHECKS", "1")
    for render in (rgba_ext.soft_rgba_ext, rgba_ext.dibr_rgba_ext):
        with pytest.raises(ValueError, match="face indices must be in"):
            render(ndc, faces + 1000, colours, 16, 1e-3, 1e-2, kind="cpp")
