"""Kaolin DIB-R and nvdiffrast backends: clear errors without them, agreement with softras with them."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from recon import cameras, mesh
from recon.render import BackendUnavailable, available_backends, get_renderer


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


HAS_CUDA = torch.cuda.is_available()
BACKENDS = {
    # name: (python module, words the error must contain when it is missing)
    "kaolin": ("kaolin", ["kaolin", "pip install kaolin==", "nvidia-kaolin.s3"]),
    "nvdiffrast": ("nvdiffrast", ["nvdiffrast", "pip install git+https://github.com/NVlabs/nvdiffrast"]),
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
    assert set(status) == {"softras", "kaolin", "nvdiffrast"}
    assert status["softras"] is None  # the torch reference always works
    for name in ("kaolin", "nvdiffrast"):
        assert status[name] is not None and name in status[name]


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
