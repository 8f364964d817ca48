"""What the two fused RGBA kernels (SoftRas soft z-buffer and DIB-R-style) must both do, side by side:
match their torch references on overlapping and odd faces, pass gradcheck against finite differences,
and give bitwise the same result for any thread count. Each render's own cases: test_render_rgb.py,
test_render_dibr.py."""

from __future__ import annotations

import pytest
import torch

from recon.ops import rgba_ext
from recon.render import RasterSettings
from recon.ops.rgba_dibr_torch import dibr_rgba_torch
from recon.ops.rgba_soft_torch import soft_rgba_torch
from render_cases import (DTYPES, FWD_TOL, GRAD_RTOL, IMPLS, compare, device_of, gradcheck_render, kernel, odd_faces,
                          outputs_for_thread_counts, random_triangles, sphere)

# render -> fused kernel (verts, faces, colours, S, sigma, cutoff_sq, **options, kind=impl); the torch
# references take the same arguments but kind
KERNELS = {"soft": rgba_ext.soft_rgba_ext, "dibr": rgba_ext.dibr_rgba_ext}
REFERENCES = {"soft": soft_rgba_torch, "dibr": dibr_rgba_torch}


def _kernel_and_reference(render: str, st: RasterSettings, impl: str, **options):
    ext, ref = KERNELS[render], REFERENCES[render]
    return (lambda v, f, c: ext(v, f, c, st.image_size, st.sigma, st.cutoff_sq, kind=impl, **options),
            lambda v, f, c: ref(v, f, c, st.image_size, st.sigma, st.cutoff_sq, **options))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("render,options", [
    # soft: overlapping triangles at many depths, some outside [near, far]
    ("soft", dict(gamma=1e-3, near=2.0, far=3.0, eps=0.2, background=(0.5, 0.5, 0.5))),
    ("dibr", {}),
])
def test_kernel_matches_torch_overlaps(render, options, impl, dtype):
    kernel(impl)
    verts, faces, colours = random_triangles(2, 12, seed=5, dtype=dtype)
    st = RasterSettings(image_size=24, sigma=3e-3)
    dev = device_of(impl)
    fwd, gv, gc, _ = compare(*_kernel_and_reference(render, st, impl, **options), verts.to(dev), faces.to(dev),
                             colours.to(dev))
    assert fwd <= FWD_TOL[dtype] and gv <= GRAD_RTOL and gc <= GRAD_RTOL


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("render", sorted(KERNELS))
def test_kernel_odd_faces(render, impl, dtype):
    """Random triangles, a repeated-vertex face and one behind the camera (the zero-area face: each
    render's own file)."""
    kernel(impl)
    verts, faces, colours = odd_faces(dtype, device_of(impl))
    st = RasterSettings(image_size=24, sigma=3e-3)
    fwd, gv, gc, (grad_v, _) = compare(*_kernel_and_reference(render, st, impl), verts, faces[[0, 1, 2, 4, 5]], colours)
    assert fwd <= FWD_TOL[dtype] and gv <= GRAD_RTOL and gc <= GRAD_RTOL
    assert torch.isfinite(grad_v).all()
    assert grad_v[:, 8].abs().max() == 0  # only used by the face behind the camera


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("render,num_faces,seed,options", [
    ("soft", 2, 4, dict(gamma=5e-2, background=(0.3, 0.3, 0.3))),
    ("dibr", 3, 2, dict(background=(0.3, 0.3, 0.3))),
])
def test_gradcheck_kernel(render, num_faces, seed, options, impl):
    kernel(impl)
    verts, faces, colours = random_triangles(batch=2, num_faces=num_faces, seed=seed)
    st = RasterSettings(image_size=8, sigma=2e-2, eps=1e-3)
    assert gradcheck_render(lambda v, f, c: KERNELS[render](v, f, c, st.image_size, st.sigma, st.cutoff_sq, kind=impl,
                                                            **options), verts, faces, colours, impl)


@pytest.mark.parametrize("render", sorted(KERNELS))
def test_cpp_result_independent_of_thread_count(render):
    kernel("cpp")
    ndc, faces, colours = sphere(2, 2, seed=4, dtype=torch.float32)
    st = RasterSettings(image_size=32, sigma=1e-3)
    runs = outputs_for_thread_counts(lambda v, c: KERNELS[render](v, faces, c, st.image_size, st.sigma, st.cutoff_sq),
                                     ndc, colours)
    assert all(torch.equal(a, b) for a, b in zip(*runs))
