"""Inputs, comparisons and checks shared by the renderer kernel tests (tests/test_render_*.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from recon import cameras, mesh
from recon.ops import rgba_ext
from recon.ops import silhouette_ext as softras_ext
from recon.render import BackendUnavailable

# The tolerances of the silhouette kernels (kernels against the torch reference).
FWD_TOL = softras_ext.PARITY_FWD_ATOL
GRAD_RTOL = softras_ext.PARITY_GRAD_RTOL
DTYPES = [torch.float32, torch.float64]
IMPLS = [
    "cpp",
    pytest.param("cuda", marks=[pytest.mark.cuda,
                                pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]),
]


def kernel(impl: str):
    """The compiled RGBA module (built once per process), or skip with the reason."""
    try:
        return rgba_ext.load_extension(impl)
    except BackendUnavailable as e:
        pytest.skip(str(e))


def device_of(impl: str) -> str:
    return "cuda" if impl == "cuda" else "cpu"


def sphere(batch: int, subdivisions: int, seed: int, dtype: torch.dtype, device: str = "cpu", channels: int = 3):
    """Randomly deformed icospheres at random standard views with random vertex colours:
    verts_ndc (B, V, 3), faces (F, 3), colours (B, V, C)."""
    g = torch.Generator().manual_seed(seed)
    v, f = mesh.icosphere(subdivisions)
    radius = 0.3 * (1 + 0.15 * torch.randn(batch, v.shape[0], 1, generator=g))
    views = torch.randint(0, cameras.NUM_VIEWS, (batch,), generator=g)
    ndc = cameras.project((v[None] * radius).to(dtype), cameras.view_azimuths(views).to(dtype))
    colours = torch.rand(batch, v.shape[0], channels, generator=g, dtype=dtype)
    return ndc.to(device), f.to(device), colours.to(device)


def random_triangles(batch: int, num_faces: int, seed: int, dtype=torch.float64, channels: int = 3):
    """Independent overlapping random triangles at random depths in [1.5, 3.5]: verts (B, 3F, 3),
    faces (F, 3), colours (B, 3F, C)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(batch, num_faces, 1, 2, generator=g, dtype=dtype) * 1.2 - 0.6
    xy = centres + (torch.rand(batch, num_faces, 3, 2, generator=g, dtype=dtype) - 0.5) * 0.8
    z = 1.5 + 2.0 * torch.rand(batch, num_faces, 3, 1, generator=g, dtype=dtype)
    verts = torch.cat([xy, z], dim=-1).reshape(batch, num_faces * 3, 3)
    colours = torch.rand(batch, num_faces * 3, channels, generator=g, dtype=dtype)
    return verts, torch.arange(num_faces * 3).reshape(num_faces, 3), colours


def odd_faces(dtype, device="cpu", near: float = 1.5):
    """Random triangles plus a zero-area face, a repeated-vertex face and one behind the camera:
    verts (2, 12, 3) at depths ``near + [0, 1)``, faces (6, 3) (rows 3: collinear, 4: repeated vertex,
    5: behind), colours (2, 12, 3)."""
    g = torch.Generator().manual_seed(7)
    xy = torch.rand(2, 12, 2, generator=g, dtype=dtype) * 1.6 - 0.8
    z = near + torch.rand(2, 12, 1, generator=g, dtype=dtype)
    verts = torch.cat([xy, z], dim=-1)
    verts[:, 9, :2] = 0.5 * (verts[:, 10, :2] + verts[:, 11, :2])  # 9, 10, 11 collinear
    verts[:, 8, 2] = -0.5                                            # 8 behind the camera
    faces = torch.tensor([[0, 1, 2], [3, 4, 5], [2, 6, 7], [9, 10, 11], [4, 4, 5], [8, 6, 1]])
    colours = torch.rand(2, 12, 3, generator=g, dtype=dtype)
    return verts.to(device), faces.to(device), colours.to(device)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def compare(render_a, render_b, verts, faces, colours, seed: int = 0):
    """Run two renders on the same inputs; return max |forward difference| and the relative
    gradient differences (vertices, colours) of a random projection, plus ``render_a``'s gradients."""
    va, ca = verts.detach().clone().requires_grad_(True), colours.detach().clone().requires_grad_(True)
    vb, cb = verts.detach().clone().requires_grad_(True), colours.detach().clone().requires_grad_(True)
    out, ref = render_a(va, faces, ca), render_b(vb, faces, cb)
    assert out.shape == ref.shape and out.dtype == ref.dtype
    w = torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed), dtype=ref.dtype).to(ref.device)
    ga_v, ga_c = torch.autograd.grad((out * w).sum(), (va, ca))
    gb_v, gb_c = torch.autograd.grad((ref * w).sum(), (vb, cb))
    return float((out - ref).detach().abs().max()), rel(ga_v, gb_v), rel(ga_c, gb_c), (ga_v, ga_c)


def outputs_for_thread_counts(fn, *inputs: torch.Tensor, threads: tuple[int, ...] = (1, 2)) -> list[tuple]:
    """``fn(*inputs)`` and the gradients of its square sum w.r.t. every input, once per thread count."""
    runs = []
    old = torch.get_num_threads()
    try:
        for n in threads:
            torch.set_num_threads(n)
            xs = [x.detach().clone().requires_grad_(True) for x in inputs]
            out = fn(*xs)
            runs.append((out.detach(), *torch.autograd.grad(out.square().sum(), xs)))
    finally:
        torch.set_num_threads(old)
    return runs


def gradcheck_render(render, verts: torch.Tensor, faces: torch.Tensor, colours: torch.Tensor, impl: str) -> bool:
    """``torch.autograd.gradcheck`` of ``render(verts, faces, colours)`` w.r.t. vertices and colours (float64)
    on the device of ``impl``."""
    dev = device_of(impl)
    f = faces.to(dev)
    return torch.autograd.gradcheck(lambda v, c: render(v, f, c),
                                    (verts.to(dev).requires_grad_(True), colours.to(dev).requires_grad_(True)),
                                    eps=1e-6, atol=1e-5)


def compile_cuda_source(source: Path, include_dirs: list[Path], tmp_path: Path) -> subprocess.CompletedProcess:
    """Compile-only nvcc run of a CUDA source against this torch's headers (no GPU needed)."""
    from torch.utils import cpp_extension

    nvcc = shutil.which("nvcc")
    try:
        includes = cpp_extension.include_paths(device_type="cuda")
    except TypeError:  # older torch
        includes = cpp_extension.include_paths(cuda=True)
    except OSError:  # CUDA_HOME unknown to torch: add the toolkit ourselves
        includes = cpp_extension.include_paths()
        for cand in (os.environ.get("CUDA_HOME"), Path(nvcc).resolve().parent.parent, "/usr/local/cuda"):
            if cand and (Path(cand) / "include" / "cuda_runtime.h").exists():
                includes.append(str(Path(cand) / "include"))
                break
    # CPU-only PyTorch wheels lack this generated header; it only sets a build macro.
    if not any((Path(p) / "c10" / "cuda" / "impl" / "cuda_cmake_macros.h").exists() for p in includes):
        stub = tmp_path / "stub" / "c10" / "cuda" / "impl"
        stub.mkdir(parents=True)
        (stub / "cuda_cmake_macros.h").write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
        includes.append(str(tmp_path / "stub"))
    py_include = __import__("sysconfig").get_paths()["include"]
    cmd = [nvcc, "-c", str(source), "-o", str(tmp_path / "out.o"), "-std=c++20", "-DRECON_WITH_CUDA",
           "--expt-relaxed-constexpr", "-Xcompiler", "-fPIC", f"-I{py_include}"]
    cmd += [f"-I{p}" for p in include_dirs] + [f"-I{p}" for p in includes]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)
