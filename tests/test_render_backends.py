"""Kaolin DIB-R and nvdiffrast backends: clear errors without them, agreement with softras with them."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest
import torch

from recon import cameras, mesh
from recon.render import BackendUnavailable, available_backends, get_renderer
from recon.render import kaolin_dibr, nvdiffrast_backend
from recon.ops.silhouette_torch import soft_silhouette_torch


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


HAS_CUDA = torch.cuda.is_available()
BACKENDS = {
    # name: (python module, words the error must contain when it is missing)
    "kaolin": ("kaolin", ["kaolin", "pip install kaolin==0.17.0", "nvidia-kaolin.s3"]),
    "nvdiffrast": ("nvdiffrast", ["nvdiffrast", "pip install --no-build-isolation git+https://github.com/NVlabs/"
                                                "nvdiffrast.git@v0.4.0", "make gpu-extras"]),
}


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_missing_backend_is_explained(name):
    module, words = BACKENDS[name]
    if HAS_CUDA and _has(module):
        pytest.skip(f"{name} is usable here")
    with pytest.raises(BackendUnavailable) as e:
        get_renderer(name)
    msg = str(e.value)
    for word in words:
        assert word in msg
    if not HAS_CUDA:
        assert "CUDA" in msg
    if not _has(module):
        assert f"the {module} package" in msg


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_backend_needs_a_cuda_device(name):
    module, _ = BACKENDS[name]
    if not (HAS_CUDA and _has(module)):
        pytest.skip(f"needs CUDA and {module}")
    with pytest.raises(BackendUnavailable, match="CUDA device"):
        get_renderer(name, device="cpu")


def test_available_backends_reports_reasons():
    status = available_backends("cpu")
    assert set(status) == {"softras", "kaolin", "nvdiffrast", "dibr"}
    assert status["dibr"] is None  # our DIB-R-style render runs on CPU (torch reference at worst)
    assert status["softras"] is None  # the torch reference always works
    for name in ("kaolin", "nvdiffrast"):
        assert status[name] is not None and name in status[name]


def test_impl_reaches_the_backends_that_have_it():
    """``impl`` is a common option (the trainer and eval pass it whatever the backend): softras and dibr
    use the implementation asked for; the others drop ``auto`` and refuse anything else."""
    for name in ("softras", "dibr"):
        r = get_renderer(name, impl="torch", image_size=16)
        assert r.requested_impl == "torch" and r.impl == "torch" and r.name == name
        with pytest.raises(ValueError, match=f"unknown {name} impl 'fortran'"):
            get_renderer(name, impl="fortran")
    for name in sorted(BACKENDS):
        with pytest.raises(ValueError, match=f"the {name} backend has no impl option"):
            get_renderer(name, impl="cpp")


@pytest.mark.cuda
@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_backend_matches_softras_on_cuda(name):
    module, _ = BACKENDS[name]
    if not (HAS_CUDA and _has(module)):
        pytest.skip(f"needs CUDA and {module}")
    v, f = mesh.icosphere(3)
    g = torch.Generator().manual_seed(0)
    verts = (0.35 * v[None] * (1 + 0.1 * torch.rand(2, v.shape[0], 1, generator=g))).cuda().requires_grad_(True)
    az = cameras.view_azimuths(torch.tensor([0, 5])).cuda()
    f = f.cuda()
    sil = get_renderer(name, image_size=64, sigma=1e-4, device="cuda").silhouettes(verts, f, az)
    ref = get_renderer("softras", impl="torch", image_size=64, sigma=1e-4).silhouettes(verts, f, az)
    assert sil.shape == (2, 64, 64) and sil.min() >= 0 and sil.max() <= 1 + 1e-6
    hard, hard_ref = sil > 0.5, ref > 0.5
    iou = (hard & hard_ref).sum() / (hard | hard_ref).sum()
    assert iou > 0.9  # same geometry, same orientation (row 0 at the top)
    (sil * torch.randn_like(sil)).sum().backward()
    assert torch.isfinite(verts.grad).all() and verts.grad.abs().sum() > 0


def _fake_nvdiffrast(monkeypatch, context_error: Exception | None = None, import_error: bool = False) -> None:
    """Install a stand-in ``nvdiffrast.torch`` whose context creation fails like a plugin build does
    (nvdiffrast <= 0.3.x builds its CUDA plugin there), and pretend CUDA is available."""
    package = types.ModuleType("nvdiffrast")
    ops = types.ModuleType("nvdiffrast.torch")

    def context(device=None):
        raise context_error

    ops.RasterizeCudaContext = context
    package.torch = ops
    monkeypatch.setitem(sys.modules, "nvdiffrast", package)
    monkeypatch.setitem(sys.modules, "nvdiffrast.torch", None if import_error else ops)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


@pytest.mark.parametrize("error", [
    RuntimeError("Error building extension 'nvdiffrast_plugin': nvcc fatal: Unsupported gpu architecture"),
    OSError("libcuda.so.1: cannot open shared object file"),
    ImportError("nvdiffrast_plugin.so: undefined symbol: _ZN3c10"),
])
def test_nvdiffrast_plugin_failure_is_backend_unavailable(monkeypatch, error):
    _fake_nvdiffrast(monkeypatch, context_error=error)
    with pytest.raises(BackendUnavailable) as e:
        get_renderer("nvdiffrast", device="cuda")
    msg = str(e.value)
    assert "plugin failed to build or load" in msg and str(error) in msg and "--no-build-isolation" in msg


def test_nvdiffrast_missing_extension_module_is_backend_unavailable(monkeypatch):
    """nvdiffrast >= 0.4.0 fails at ``import nvdiffrast.torch`` when its compiled module is missing."""
    _fake_nvdiffrast(monkeypatch, import_error=True)
    with pytest.raises(BackendUnavailable, match="the nvdiffrast package"):
        get_renderer("nvdiffrast", device="cuda")


def test_nvdiffrast_culls_faces_like_softras():
    """``drawable_faces`` keeps exactly the faces softras draws (all depths > 0, finite x/y):
    rendering only them gives softras' silhouette of the whole mesh."""
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(2, 30, 2, generator=g, dtype=torch.float64) * 1.4 - 0.7
    z = 1.0 + torch.rand(2, 30, 1, generator=g, dtype=torch.float64)
    verts = torch.cat([xy, z], dim=-1)
    verts[0, 3, 2] = -0.2            # behind the camera in item 0 only
    verts[1, 7, 2] = 0.0             # exactly on the camera plane in item 1
    verts[1, 11, 0] = float("nan")   # not finite in item 1
    faces = torch.arange(30).reshape(10, 3)
    keep = nvdiffrast_backend.drawable_faces(verts, faces)
    expected = torch.ones(2, 10, dtype=torch.bool)
    expected[0, 1] = expected[1, 2] = expected[1, 3] = False
    assert torch.equal(keep, expected)
    for b in range(2):
        full = soft_silhouette_torch(verts[b:b + 1], faces, 32, 1e-3, 1e-3 * 9.2)
        kept = soft_silhouette_torch(verts[b:b + 1], faces[keep[b]], 32, 1e-3, 1e-3 * 9.2)
        torch.testing.assert_close(full, kept, rtol=0, atol=0)


def test_kaolin_hint_names_a_consistent_pair(monkeypatch):
    monkeypatch.setattr(torch, "__version__", "2.13.0+cpu")
    monkeypatch.setattr(torch.version, "cuda", None)
    assert "torch-2.5.1_cu124.html" in kaolin_dibr.install_hint()
    monkeypatch.setattr(torch, "__version__", "2.4.0+cu121")
    monkeypatch.setattr(torch.version, "cuda", "12.1")
    assert "torch-2.4.0_cu121.html" in kaolin_dibr.install_hint()


def test_nvdiffrast_clip_positions_keep_depth_order_inside_the_clip_range():
    g = torch.Generator().manual_seed(4)
    verts = torch.cat([torch.rand(2, 20, 2, generator=g) * 2 - 1, 0.5 + 3 * torch.rand(2, 20, 1, generator=g)], -1)
    verts[0, 0, 2] = -5.0                 # behind the camera: must not squash the others' depth range
    verts[1, 1, 0] = float("inf")
    verts = verts.requires_grad_(True)
    pos = nvdiffrast_backend.NvdiffrastRenderer._clip_positions(verts)
    assert pos.shape == (2, 20, 4) and torch.isfinite(pos).all() and (pos[..., 3] == 1).all()
    z = pos[..., 2].detach()
    assert (z.abs() <= 0.95).all()
    front = torch.ones(2, 20, dtype=torch.bool)
    front[0, 0] = front[1, 1] = False
    for b in range(2):
        order = verts[b, front[b], 2].detach().argsort()
        assert (z[b, front[b]][order].diff() > 0).all()  # nearer stays nearer
        assert z[b, front[b]].min() == pytest.approx(-0.9) and z[b, front[b]].max() == pytest.approx(0.9)
    pos[..., :2].sum().backward()
    assert torch.isfinite(verts.grad).all() and (verts.grad[0, 2:, :2] == 1).all()


def test_one_impl_choice_per_extension_and_colour_runs_name_theirs():
    """Two extensions, two ImplChoice objects: dibr and softras's colour renders share the rgba one, and
    the training header of a --colour run names the implementation the colours render with."""
    from types import SimpleNamespace

    from pipelines.cli import _impls
    from recon.ops import rgba, silhouette

    soft, dibr = get_renderer("softras", impl="torch"), get_renderer("dibr", impl="torch")
    assert soft.choice is silhouette.CHOICE and soft.rgba_choice is rgba.CHOICE
    assert dibr.choice is rgba.CHOICE and dibr.rgba_choice is rgba.CHOICE
    assert silhouette.CHOICE is not rgba.CHOICE
    trainer = SimpleNamespace(renderer=soft, cfg=SimpleNamespace(colour=True))
    assert _impls(trainer) == "torch (colour: torch)"
    trainer.cfg.colour = False
    assert _impls(trainer) == "torch"
