"""Fused soft rasterizer kernels (C++ and CUDA) against the torch reference."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recon import cameras, mesh
from recon.render import BackendUnavailable, RasterSettings, get_renderer
from recon.render import softras_ext
from recon.render.softras import available_impls
from recon.render.softras_torch import soft_silhouette_torch

IMPLS = [
    "cpp",
    pytest.param("cuda", marks=[pytest.mark.cuda,
                                pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]),
]
DTYPES = [torch.float32, torch.float64]
FWD_TOL = {torch.float32: 1e-4, torch.float64: 1e-5}
GRAD_RTOL = 1e-3


def _kernel(impl: str):
    """The compiled module (built once per process and shared by all tests), or skip."""
    try:
        return softras_ext.load_extension(impl)
    except BackendUnavailable as e:
        pytest.skip(str(e))


def _device(impl: str) -> str:
    return "cuda" if impl == "cuda" else "cpu"


def _sphere(batch, subdivisions, seed, dtype, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    v, f = mesh.icosphere(subdivisions)
    radius = 0.3 * (1 + 0.15 * torch.randn(batch, v.shape[0], 1, generator=g))
    views = torch.randint(0, cameras.NUM_VIEWS, (batch,), generator=g)
    ndc = cameras.project((v[None] * radius).to(dtype), cameras.view_azimuths(views).to(dtype))
    return ndc.to(device), f.to(device)


def _odd_faces(dtype, device="cpu"):
    """Random triangles plus a zero-area face, a repeated-vertex face and one behind the camera."""
    g = torch.Generator().manual_seed(7)
    xy = torch.rand(2, 12, 2, generator=g, dtype=dtype) * 1.6 - 0.8
    z = 1.0 + torch.rand(2, 12, 1, generator=g, dtype=dtype)
    verts = torch.cat([xy, z], dim=-1)
    verts[:, 9, :2] = 0.5 * (verts[:, 10, :2] + verts[:, 11, :2])  # 9, 10, 11 collinear
    verts[:, 8, 2] = -0.5                                            # 8 behind the camera
    faces = torch.tensor([[0, 1, 2], [3, 4, 5], [2, 6, 7], [9, 10, 11], [4, 4, 5], [8, 6, 1]])
    return verts.to(device), faces.to(device)


def _compare(impl, ndc, faces, st):
    ndc = ndc.detach().requires_grad_(True)
    ref = soft_silhouette_torch(ndc, faces, st.image_size, st.sigma, st.cutoff_sq)
    out = softras_ext.soft_silhouette_ext(ndc, faces, st.image_size, st.sigma, st.cutoff_sq, kind=impl)
    assert out.dtype == ndc.dtype and out.shape == ref.shape
    fwd = float((out - ref).detach().abs().max())
    w = torch.randn(ref.shape, generator=torch.Generator().manual_seed(0), dtype=ref.dtype).to(ref.device)
    g_ref, = torch.autograd.grad((ref * w).sum(), ndc)
    g_out, = torch.autograd.grad((out * w).sum(), ndc)
    rel = float((g_out - g_ref).norm() / g_ref.norm())
    return fwd, rel, g_out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("size,sigma", [(32, 1e-3), (64, 1e-4)])
def test_sphere_matches_torch(impl, dtype, size, sigma):
    _kernel(impl)
    ndc, faces = _sphere(3, 2, seed=size, dtype=dtype, device=_device(impl))
    fwd, rel, grad = _compare(impl, ndc, faces, RasterSettings(image_size=size, sigma=sigma))
    assert fwd <= FWD_TOL[dtype]
    assert rel <= GRAD_RTOL
    assert grad[..., 2].abs().max() == 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_cpp_baseline_simd_matches_torch(dtype, monkeypatch):
    """The kernel is compiled for baseline x86-64 and for AVX2; check the one not picked here too."""
    ext = _kernel("cpp")
    monkeypatch.setenv("RECON_SOFTRAS_SIMD", "baseline")
    assert ext.cpu_simd() == "baseline"
    ndc, faces = _sphere(2, 2, seed=11, dtype=dtype)
    fwd, rel, _ = _compare("cpp", ndc, faces, RasterSettings(image_size=32, sigma=1e-3))
    assert fwd <= FWD_TOL[dtype] and rel <= GRAD_RTOL


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_odd_faces_match_torch(impl, dtype):
    _kernel(impl)
    verts, faces = _odd_faces(dtype, _device(impl))
    st = RasterSettings(image_size=24, sigma=3e-3)
    regular = faces[[0, 1, 2, 4, 5]]
    fwd, rel, grad = _compare(impl, verts, regular, st)
    assert fwd <= FWD_TOL[dtype] and rel <= GRAD_RTOL
    assert torch.isfinite(grad).all()
    assert grad[:, 8].abs().max() == 0  # only used by the face behind the camera
    # A zero-area face with a vertex inside its opposite edge: the edges overlap, so which one is
    # "closest" is a rounding tie and the per-vertex gradient is only defined up to that choice.
    # Values and the total (translation) gradient are still well defined.
    fwd, _, grad = _compare(impl, verts, faces[3:4], st)
    ref_v = verts.detach().requires_grad_(True)
    soft_silhouette_torch(ref_v, faces[3:4], st.image_size, st.sigma, st.cutoff_sq).sum().backward()
    out_v = verts.detach().requires_grad_(True)
    softras_ext.soft_silhouette_ext(out_v, faces[3:4], st.image_size, st.sigma, st.cutoff_sq, kind=impl).sum().backward()
    assert fwd <= FWD_TOL[dtype] and torch.isfinite(out_v.grad).all()
    torch.testing.assert_close(out_v.grad[:, 9:12].sum(1), ref_v.grad[:, 9:12].sum(1), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("impl", IMPLS)
def test_big_windows_odd_size(impl):
    """Faces whose windows cover most of a non-power-of-two image (long pixel walks)."""
    _kernel(impl)
    verts = torch.tensor([[[-0.9, -0.9, 1.0], [0.95, -0.7, 1.0], [0.1, 0.9, 1.0],
                           [-1.5, 0.2, 2.0], [0.3, 1.4, 2.0], [0.2, -0.1, 2.0]]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [3, 4, 5]])
    fwd, rel, _ = _compare(impl, verts.to(_device(impl)), faces.to(_device(impl)),
                           RasterSettings(image_size=97, sigma=1e-3))
    assert fwd <= 1e-5 and rel <= GRAD_RTOL


@pytest.mark.parametrize("impl", IMPLS)
def test_batch_of_one_and_large_sigma(impl):
    _kernel(impl)
    ndc, faces = _sphere(1, 1, seed=2, dtype=torch.float64, device=_device(impl))
    fwd, rel, _ = _compare(impl, ndc, faces, RasterSettings(image_size=20, sigma=5e-2, eps=1e-3))
    assert fwd <= 1e-5 and rel <= GRAD_RTOL


@pytest.mark.parametrize("impl", IMPLS)
def test_gradcheck_tiny_mesh(impl):
    _kernel(impl)
    g = torch.Generator().manual_seed(0)
    verts = torch.cat([torch.rand(2, 4, 2, generator=g, dtype=torch.float64) * 1.2 - 0.6,
                       torch.full((2, 4, 1), 2.0, dtype=torch.float64)], dim=-1)
    verts = verts.to(_device(impl)).requires_grad_(True)
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]], device=_device(impl))
    st = RasterSettings(image_size=8, sigma=2e-2)
    assert torch.autograd.gradcheck(
        lambda v: softras_ext.soft_silhouette_ext(v, faces, st.image_size, st.sigma, st.cutoff_sq, kind=impl),
        (verts,), eps=1e-6, atol=1e-5)


def test_cpp_result_independent_of_thread_count():
    _kernel("cpp")
    ndc, faces = _sphere(2, 2, seed=4, dtype=torch.float32)
    st = RasterSettings(image_size=32, sigma=1e-3)
    outs = []
    old = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            v = ndc.clone().requires_grad_(True)
            sil = softras_ext.soft_silhouette_ext(v, faces, st.image_size, st.sigma, st.cutoff_sq)
            sil.square().sum().backward()
            outs.append((sil.detach(), v.grad))
    finally:
        torch.set_num_threads(old)
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_cpp_kernel_input_checks():
    ext = _kernel("cpp")
    ndc, faces = _sphere(1, 1, seed=0, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="int64"):
        ext.forward(ndc, faces.int(), 16, 1e-3, 1e-2)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        ext.forward(ndc.half(), faces, 16, 1e-3, 1e-2)
    with pytest.raises(RuntimeError, match="contiguous"):
        ext.forward(ndc.transpose(1, 2).contiguous().transpose(1, 2), faces, 16, 1e-3, 1e-2)
    with pytest.raises(RuntimeError, match="face indices"):
        ext.forward(ndc, faces + 1000, 16, 1e-3, 1e-2)
    assert ext.with_cuda is False
    if torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="not compiled with GPU support"):
            ext.forward(ndc.cuda(), faces.cuda(), 16, 1e-3, 1e-2)


def test_renderer_impls():
    _kernel("cpp")
    r = get_renderer("softras", image_size=32)
    assert r.impl == "cpp" and r.requested_impl == "auto"
    avail = available_impls("cpu")
    assert set(avail) == {"torch", "cpp", "cuda"} and avail["torch"] is None and avail["cpp"] is None
    assert avail["cuda"]  # never runs CPU tensors
    v, f = mesh.icosphere(2)
    verts = (0.4 * v)[None].repeat(2, 1, 1)
    az = cameras.view_azimuths(torch.tensor([0, 3]))
    ref = get_renderer("softras", impl="torch", image_size=32).silhouettes(verts, f, az)
    torch.testing.assert_close(r.silhouettes(verts, f, az), ref, atol=1e-4, rtol=0)
    assert get_renderer("softras", impl="cpp").impl == "cpp"
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="CUDA"):
            get_renderer("softras", impl="cuda")


def test_build_failure_is_backend_unavailable(monkeypatch):
    monkeypatch.setitem(softras_ext._CACHE, "cpp", BackendUnavailable("softras cpp kernel unavailable: boom"))
    with pytest.raises(BackendUnavailable, match="boom"):
        softras_ext.soft_silhouette_ext(torch.zeros(1, 3, 3), torch.tensor([[0, 1, 2]]), 8, 1e-3, 1e-2)
    # auto falls back to the torch reference
    r = get_renderer("softras", image_size=8)
    assert r.impl == "torch"


def _cuda_home(nvcc: str) -> Path | None:
    from torch.utils import cpp_extension

    for cand in (os.environ.get("CUDA_HOME"), cpp_extension.CUDA_HOME, Path(nvcc).resolve().parent.parent,
                 "/usr/local/cuda"):
        if cand and (Path(cand) / "include" / "cuda_runtime.h").exists():
            return Path(cand)
    return None


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not found")
def test_cuda_source_compiles_with_nvcc(tmp_path):
    """Compile-only check of softras_cuda.cu (runs without a GPU)."""
    from torch.utils import cpp_extension

    nvcc = shutil.which("nvcc")
    try:
        includes = cpp_extension.include_paths(device_type="cuda")
    except TypeError:  # older torch
        includes = cpp_extension.include_paths(cuda=True)
    except OSError:  # CUDA_HOME unknown to torch: add the toolkit ourselves
        includes = cpp_extension.include_paths()
        home = _cuda_home(nvcc)
        if home is not None:
            includes.append(str(home / "include"))
    # CPU-only PyTorch wheels lack this generated header; it only sets a build macro.
    if not any((Path(p) / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").exists() for p in includes):
        stub = tmp_path / "stub" / "c10" / "cuda" / "impl"
        stub.mkdir(parents=True)
        (stub / "cuda_cmake_macros.h").write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
        includes.append(str(tmp_path / "stub"))
    csrc = Path(softras_ext.__file__).parent / "csrc" / "softras"
    py_include = __import__("sysconfig").get_paths()["include"]
    cmd = [nvcc, "-c", str(csrc / "softras_cuda.cu"), "-o", str(tmp_path / "tmp.o"), "-std=c++20",
           "-DRECON_WITH_CUDA", "--expt-relaxed-constexpr", "-Xcompiler", "-fPIC", f"-I{csrc}", f"-I{py_include}"]
    cmd += [f"-I{p}" for p in includes]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stderr[-4000:]
    assert (tmp_path / "tmp.o").stat().st_size > 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
