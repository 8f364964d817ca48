"""Fused soft rasterizer kernels (C++ and CUDA) against the torch reference."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

from recon import cameras, mesh
from recon.render import BackendUnavailable, RasterSettings, get_renderer
from recon.ops import jit
from recon.ops import silhouette_ext as softras_ext
from recon.render.softras import available_impls
from recon.ops.silhouette_torch import soft_silhouette_torch
from recon.ops.window_pairs import face_windows
from render_cases import compile_cuda_source, odd_faces, outputs_for_thread_counts, sphere

_CUDA_MARKS = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
# "cuda" is the CUDA kernel with its atomic backward, "cuda-det" with the deterministic one; "emu" and
# "emu-det" are the same CUDA source compiled as C++ and run on CPU threads (cuda_emulation.h), so
# the CUDA kernels' logic is checked on machines without a GPU too.
IMPLS = ["cpp", "emu", "emu-det", pytest.param("cuda", marks=_CUDA_MARKS), pytest.param("cuda-det", marks=_CUDA_MARKS)]
DTYPES = [torch.float32, torch.float64]
FWD_TOL = softras_ext.PARITY_FWD_ATOL
GRAD_RTOL = softras_ext.PARITY_GRAD_RTOL


def _kind(impl: str) -> str:
    return {"cuda-det": "cuda", "emu": softras_ext.EMULATION, "emu-det": softras_ext.EMULATION}.get(impl, impl)


def _kernel(impl: str):
    """The compiled module (built once per process and shared by all tests), or skip."""
    try:
        return softras_ext.load_extension(_kind(impl))
    except BackendUnavailable as e:
        pytest.skip(str(e))


def _device(impl: str) -> str:
    return "cuda" if impl.startswith("cuda") else "cpu"


def _ext(impl: str, verts, faces, st: RasterSettings):
    return softras_ext.soft_silhouette_ext(verts, faces, st.image_size, st.sigma, st.cutoff_sq, kind=_kind(impl),
                                           deterministic=impl.endswith("-det"))


def _sphere(batch, subdivisions, seed, dtype, device="cpu"):
    """Deformed icospheres at random views: verts_ndc (B, V, 3), faces (render_cases.sphere)."""
    return sphere(batch, subdivisions, seed, dtype, device)[:2]


def _odd_faces(dtype, device="cpu"):
    """render_cases.odd_faces at depths 1 + [0, 1): verts (2, 12, 3), faces (6, 3)."""
    return odd_faces(dtype, device, near=1.0)[:2]


def _compare(impl, ndc, faces, st):
    ndc = ndc.detach().requires_grad_(True)
    ref = soft_silhouette_torch(ndc, faces, st.image_size, st.sigma, st.cutoff_sq)
    out = _ext(impl, ndc, faces, st)
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
    _ext(impl, out_v, faces[3:4], st).sum().backward()
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


@pytest.mark.parametrize("impl", [i for i in IMPLS if i != "emu"])  # emu-det covers the emulated kernels
def test_gradcheck_tiny_mesh(impl):
    _kernel(impl)
    g = torch.Generator().manual_seed(0)
    verts = torch.cat([torch.rand(2, 4, 2, generator=g, dtype=torch.float64) * 1.2 - 0.6,
                       torch.full((2, 4, 1), 2.0, dtype=torch.float64)], dim=-1)
    verts = verts.to(_device(impl)).requires_grad_(True)
    faces = torch.tensor([[0, 1, 2], [1, 3, 2]], device=_device(impl))
    st = RasterSettings(image_size=8, sigma=2e-2)
    # fast_mode (random projections) for the emulation: it starts a thread per CUDA thread per call
    assert torch.autograd.gradcheck(
        lambda v: _ext(impl, v, faces, st), (verts,), eps=1e-6, atol=1e-5, fast_mode=impl == "emu-det")


def test_cpp_result_independent_of_thread_count():
    _kernel("cpp")
    ndc, faces = _sphere(2, 2, seed=4, dtype=torch.float32)
    st = RasterSettings(image_size=32, sigma=1e-3)
    runs = outputs_for_thread_counts(
        lambda v: softras_ext.soft_silhouette_ext(v, faces, st.image_size, st.sigma, st.cutoff_sq), ndc)
    assert all(torch.equal(a, b) for a, b in zip(*runs))


def _random_scene(seed: int, batch: int, dtype=torch.float64):
    """Random triangles from tiny to larger than the image, some off-screen, some degenerate, some
    with a vertex behind the camera or at infinity; plus the faces of a deformed sphere."""
    g = torch.Generator().manual_seed(seed)
    n = 40
    centre = torch.rand(batch, n, 1, 2, generator=g, dtype=dtype) * 3.0 - 1.5
    size = torch.exp(torch.rand(batch, n, 1, 1, generator=g, dtype=dtype) * 6.0 - 5.5)  # 0.004 .. 1.6
    xy = (centre + size * torch.randn(batch, n, 3, 2, generator=g, dtype=dtype)).reshape(batch, 3 * n, 2)
    z = 0.5 + torch.rand(batch, 3 * n, 1, generator=g, dtype=dtype)
    verts = torch.cat([xy, z], dim=-1)
    verts[:, 0, 2] = -1.0                     # face 0 behind the camera
    verts[:, 4] = verts[:, 3]                 # face 1 has a repeated vertex
    verts[:, 7, 0] = float("inf")             # face 2 has a vertex at infinity
    faces = torch.arange(3 * n).reshape(n, 3)
    sphere, sphere_faces = _sphere(batch, 1, seed=seed, dtype=dtype)
    return torch.cat([verts, sphere], dim=1), torch.cat([faces, sphere_faces + 3 * n])


def _pairs_that_matter(verts, faces, size: int, cutoff_sq: float) -> torch.Tensor:
    """(B, S*S, F) bool, brute force: valid face and (pixel centre inside, or d^2 < cutoff_sq with a
    relative margin of 1e-9 against rounding at the exact boundary), i.e. D >= eps."""
    fv = verts[:, faces]  # (B, F, 3, 3)
    a, valid = fv[..., :2], (fv[..., 2] > 0).all(-1) & torch.isfinite(fv[..., :2]).flatten(-2).all(-1)
    a = torch.nan_to_num(a, posinf=1e6, neginf=-1e6)
    e = a.roll(-1, dims=2) - a
    p = cameras.pixel_centers(size, dtype=verts.dtype).reshape(1, -1, 1, 1, 2)
    ap = p - a[:, None]
    len2 = (e * e).sum(-1)[:, None]
    t = torch.where(len2 > 0, (ap * e[:, None]).sum(-1) / len2.clamp(min=1e-300), torch.zeros_like(len2)).clamp(0, 1)
    d2 = ((ap - t[..., None] * e[:, None]) ** 2).sum(-1).min(-1).values  # (B, P, F)
    cross = e[:, None, ..., 0] * ap[..., 1] - e[:, None, ..., 1] * ap[..., 0]
    area2 = (a[..., 1, 0] - a[..., 0, 0]) * (a[..., 2, 1] - a[..., 0, 1]) - \
            (a[..., 1, 1] - a[..., 0, 1]) * (a[..., 2, 0] - a[..., 0, 0])
    inside = ((cross >= 0).all(-1) | (cross <= 0).all(-1)) & (area2 != 0)[:, None]
    return (inside | (d2 < cutoff_sq * (1 - 1e-9))) & valid[:, None]


@pytest.mark.parametrize("seed,size,tile,sigma", [(0, 17, 16, 1e-3), (1, 32, 8, 1e-4), (2, 64, 16, 3e-4),
                                                  (3, 50, 5, 1e-2), (4, 40, 64, 1e-3)])
def test_tile_bins_hold_every_pair_that_matters(seed, size, tile, sigma):
    """The CUDA kernel only looks at the faces binned to a pixel's tile: the bins (same C++ code on
    CPU and CUDA) must hold every pixel-face pair with D >= eps, in ascending face order, and
    nothing whose window misses the tile."""
    _kernel("cpp")
    verts, faces = _random_scene(seed, batch=2)
    st = RasterSettings(image_size=size, sigma=sigma)
    bins = softras_ext.bin_faces(verts, faces, size, st.cutoff_sq, tile=tile, kind="cpp")
    b_count, n_faces = verts.shape[0], faces.shape[0]
    side = -(-size // tile)
    offsets, tile_faces = bins["tile_offsets"], bins["tile_faces"].long()
    assert offsets.shape == (b_count * side * side + 1,) and offsets[0] == 0 and offsets[-1] == tile_faces.numel()
    assert (offsets[1:] >= offsets[:-1]).all()

    # Same windows as the torch reference.
    fv = verts[:, faces]
    valid = (fv[..., 2] > 0).all(-1) & torch.isfinite(fv[..., :2]).flatten(-2).all(-1)
    ref_windows = torch.stack(face_windows(fv[..., :2], valid, size, st.cutoff_sq), dim=-1)
    assert torch.equal(bins["windows"].long(), ref_windows)

    lists = [tile_faces[offsets[k]:offsets[k + 1]] for k in range(offsets.numel() - 1)]
    for faces_in_tile in lists:
        assert (faces_in_tile[1:] > faces_in_tile[:-1]).all()  # ascending, no duplicates
    # Exactly the faces whose window intersects the tile.
    c0, c1, r0, r1 = ref_windows.unbind(-1)
    for b in range(b_count):
        for k in range(side * side):
            ty, tx = divmod(k, side)
            hit = (c0[b] <= min(tx * tile + tile, size) - 1) & (c1[b] >= tx * tile) & \
                  (r0[b] <= min(ty * tile + tile, size) - 1) & (r1[b] >= ty * tile) & (c0[b] <= c1[b]) & (r0[b] <= r1[b])
            assert torch.equal(lists[b * side * side + k], hit.nonzero()[:, 0])
    # Every pair that matters is binned to its pixel's tile.
    matter = _pairs_that_matter(verts, faces, size, st.cutoff_sq)
    assert matter.any()
    b_idx, pix, f_idx = matter.nonzero().unbind(-1)
    tile_of_pixel = (pix // size // tile) * side + (pix % size) // tile
    for b, k, f in zip(b_idx.tolist(), tile_of_pixel.tolist(), f_idx.tolist()):
        assert f in set(lists[b * side * side + k].tolist())
    # face_pair_offsets / pair_slot: each face's entries, in row-major tile order.
    fpo, slot = bins["face_pair_offsets"], bins["pair_slot"]
    assert fpo.shape == (b_count * n_faces + 1,) and fpo[-1] == tile_faces.numel()
    assert torch.equal(slot.sort().values, torch.arange(tile_faces.numel()))
    owner_tile = torch.searchsorted(offsets, slot, right=True) - 1  # b * T + t of each pair
    for i in range(b_count * n_faces):
        j = slot[fpo[i]:fpo[i + 1]]
        assert (tile_faces[j] == i % n_faces).all()
        assert (owner_tile[fpo[i]:fpo[i + 1]] // (side * side) == i // n_faces).all()
        assert (owner_tile[fpo[i]:fpo[i + 1]].diff() > 0).all()


def test_tile_bins_of_an_empty_scene():
    _kernel("cpp")
    verts = torch.tensor([[[0.0, 0.0, -1.0], [0.5, 0.0, -1.0], [0.0, 0.5, -1.0]]])  # behind the camera
    bins = softras_ext.bin_faces(verts, torch.tensor([[0, 1, 2]]), 32, 1e-3, tile=16, kind="cpp")
    assert bins["tile_faces"].numel() == 0 and torch.equal(bins["tile_offsets"], torch.zeros(5, dtype=torch.long))
    with pytest.raises(RuntimeError, match="tile"):
        softras_ext.bin_faces(verts, torch.tensor([[0, 1, 2]]), 32, 1e-3, tile=0, kind="cpp")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bins_equal_cpu_bins():
    _kernel("cuda")
    verts, faces = _random_scene(5, batch=3)
    cpu = softras_ext.bin_faces(verts, faces, 64, 1e-3, tile=16, kind="cuda")  # CPU tensors: the CPU path
    gpu = softras_ext.bin_faces(verts.cuda(), faces.cuda(), 64, 1e-3, tile=16, kind="cuda")
    for name, value in cpu.items():
        assert torch.equal(gpu[name].cpu(), value), name


def test_emulated_cuda_kernels_on_random_scenes():
    """The CUDA source run on CPU threads: random scenes (huge, tiny, off-screen, degenerate faces,
    a vertex behind the camera), sizes that are not multiples of the tile, both backward modes; the
    deterministic one is bitwise reproducible, the atomic one agrees with it. float64: in float32
    some of these near-degenerate triangles pick a different closest edge than the reference (the
    C++ kernel too), which the sphere tests avoid."""
    _kernel("emu")
    dtype = torch.float64
    for seed, size in ((0, 37), (1, 50)):
        verts, faces = _random_scene(seed, batch=2, dtype=dtype)
        verts[:, 7, 0] = 0.3  # finite: the reference's gradient is NaN-free only without infinities
        st = RasterSettings(image_size=size, sigma=2e-3)
        fwd, rel, grad = _compare("emu-det", verts, faces, st)
        assert fwd <= FWD_TOL[dtype] and rel <= GRAD_RTOL and torch.isfinite(grad).all()
        _, rel_atomic, grad_atomic = _compare("emu", verts, faces, st)
        assert rel_atomic <= GRAD_RTOL
        _, _, again = _compare("emu-det", verts, faces, st)
        assert torch.equal(grad, again)
        assert float((grad_atomic - grad).norm() / grad.norm()) <= 1e-5


def test_emulated_cuda_kernel_many_faces_per_tile():
    """More faces per tile than a block has threads (several shared-memory chunks per tile)."""
    _kernel("emu")
    ndc, faces = _sphere(1, 4, seed=9, dtype=torch.float64)  # 5120 faces on ~ 20 px: > 256 per tile
    fwd, rel, _ = _compare("emu-det", ndc, faces, RasterSettings(image_size=20, sigma=1e-4))
    assert fwd <= FWD_TOL[torch.float64] and rel <= GRAD_RTOL
    bins = softras_ext.bin_faces(ndc, faces, 20, RasterSettings(image_size=20, sigma=1e-4).cutoff_sq, kind="cpp")
    assert int(bins["tile_offsets"].diff().max()) > 256


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("size,subdivisions", [(128, 5), (256, 5)])
def test_cuda_tiled_kernel_large_mesh(size, subdivisions):
    """10k+ faces (20480) at 128 and 256 px, both backward modes, against the torch reference."""
    _kernel("cuda")
    ndc, faces = _sphere(4, subdivisions, seed=size, dtype=torch.float32, device="cuda")
    st = RasterSettings(image_size=size, sigma=1e-4)
    for impl in ("cuda", "cuda-det"):
        fwd, rel, _ = _compare(impl, ndc, faces, st)
        assert fwd <= FWD_TOL[torch.float32] and rel <= GRAD_RTOL, impl


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", DTYPES)
def test_cuda_deterministic_backward_is_bitwise(dtype):
    _kernel("cuda")
    ndc, faces = _sphere(8, 3, seed=3, dtype=dtype, device="cuda")
    st = RasterSettings(image_size=64, sigma=1e-4)
    w = torch.randn(8, 64, 64, generator=torch.Generator().manual_seed(1), dtype=dtype).cuda()

    def run(deterministic: bool):
        v = ndc.clone().requires_grad_(True)
        sil = softras_ext.soft_silhouette_ext(v, faces, st.image_size, st.sigma, st.cutoff_sq,
                                              deterministic=deterministic)
        (sil * w).sum().backward()
        return sil.detach(), v.grad

    (s1, g1), (s2, g2), (s3, g3) = run(True), run(True), run(False)
    assert torch.equal(s1, s2) and torch.equal(g1, g2) and torch.equal(s1, s3)  # the forward never uses atomics
    assert float((g3 - g1).norm() / g1.norm()) <= GRAD_RTOL


def test_cpp_kernel_input_checks():
    ext = _kernel("cpp")
    ndc, faces = _sphere(1, 1, seed=0, dtype=torch.float32)
    with pytest.raises(RuntimeError, match="int64"):
        ext.forward(ndc, faces.int(), 16, 1e-3, 1e-2)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        ext.forward(ndc.half(), faces, 16, 1e-3, 1e-2)
    with pytest.raises(RuntimeError, match="contiguous"):
        ext.forward(ndc.transpose(1, 2).contiguous().transpose(1, 2), faces, 16, 1e-3, 1e-2)
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
    monkeypatch.setattr(jit, "_CACHE", {})  # forget the kernels this process built
    monkeypatch.setenv("CXX", "no-such-compiler")
    with pytest.raises(BackendUnavailable, match="softras cpp kernel unavailable: no C.. compiler found"):
        softras_ext.soft_silhouette_ext(torch.zeros(1, 3, 3), torch.tensor([[0, 1, 2]]), 8, 1e-3, 1e-2)
    # auto falls back to the torch reference
    r = get_renderer("softras", image_size=8)
    assert r.impl == "torch"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not found")
def test_cuda_source_compiles_with_nvcc(tmp_path):
    """Compile-only check of softras_cuda.cu (runs without a GPU)."""
    csrc = Path(softras_ext.__file__).parent / "csrc"
    res = compile_cuda_source(csrc / "silhouette" / "softras_cuda.cu", [csrc / "silhouette", csrc / "common"], tmp_path)
    assert res.returncode == 0, res.stderr[-4000:]
    assert (tmp_path / "out.o").stat().st_size > 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_bad_face_index_checked_off_the_hot_path(monkeypatch):
    """The kernel no longer reads faces back to the host; the wrapper checks them with
    RECON_DEBUG_CHECKS=1, the renderer once per faces tensor (recon.ops.checks)."""
    _kernel("cpp")
    ndc, faces = _sphere(1, 1, seed=0, dtype=torch.float32)
    monkeypatch.setenv("RECON_DEBUG_CHECKS", "1")
    with pytest.raises(ValueError, match=r"face indices must be in \[0, "):
        softras_ext.soft_silhouette_ext(ndc, faces + 1000, 16, 1e-3, 1e-2, kind="cpp")
    monkeypatch.delenv("RECON_DEBUG_CHECKS")
    renderer = get_renderer("softras", impl="cpp", image_size=16)
    with pytest.raises(ValueError, match="face indices must be in"):
        renderer.silhouettes(torch.rand(1, 3, 3), torch.tensor([[0, 1, 3]]), torch.zeros(1))
