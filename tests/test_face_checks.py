"""Face indices are checked where a mesh enters, not inside the kernels (recon.ops.checks): the torch
references always give a one-line ValueError, a renderer checks a faces tensor once."""

from __future__ import annotations

import pytest
import torch

from recon.ops import checks
from recon.ops.rgba_dibr_torch import dibr_rgba_torch
from recon.ops.rgba_soft_torch import soft_rgba_torch
from recon.ops.silhouette_torch import soft_silhouette_torch
from recon.render import get_renderer


def _mesh() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    verts = torch.tensor([[[-0.5, -0.5, 2.0], [0.5, -0.5, 2.0], [0.0, 0.5, 2.0], [0.2, 0.2, 2.0]]])
    return verts, torch.tensor([[0, 1, 2]]), torch.rand(1, 4, 3)


@pytest.mark.parametrize("bad", [[[0, 1, 4]], [[0, -1, 2]]], ids=["past-the-end", "negative"])
def test_reference_path_names_a_bad_face_index(bad):
    verts, _, colours = _mesh()
    faces = torch.tensor(bad)
    with pytest.raises(ValueError, match=r"face indices must be in \[0, 4\)"):
        soft_silhouette_torch(verts, faces, 8, 1e-3, 1e-2)
    with pytest.raises(ValueError, match=r"face indices must be in \[0, 4\)"):
        soft_rgba_torch(verts, faces, colours, 8, 1e-3, 1e-2)
    with pytest.raises(ValueError, match=r"face indices must be in \[0, 4\)"):
        dibr_rgba_torch(verts, faces, colours, 8, 1e-3, 1e-2, (0.0, 0.0, 0.0))
    renderer = get_renderer("softras", impl="torch", image_size=8)
    with pytest.raises(ValueError, match=r"face indices must be in \[0, 4\)"):
        renderer.silhouettes(verts, faces, torch.zeros(1))


def test_renderer_checks_a_faces_tensor_once(monkeypatch):
    calls = []
    real = checks.check_face_indices
    monkeypatch.setattr(checks, "check_face_indices", lambda f, n: (calls.append(n), real(f, n)))
    verts, faces, _ = _mesh()
    renderer = get_renderer("softras", impl="torch", image_size=8)
    for _ in range(3):
        renderer.silhouettes(verts, faces, torch.zeros(1))
    assert calls == [4]
    faces[0, 2] = 3  # modified in place: checked again
    renderer.silhouettes(verts, faces, torch.zeros(1))
    assert calls == [4, 4]
    faces[0, 2] = 7
    with pytest.raises(ValueError, match="face indices"):
        renderer.silhouettes(verts, faces, torch.zeros(1))
