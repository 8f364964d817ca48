"""RGBA renders behind one call each, with a choice of implementation (like ``softras``'s ``impl``).

    soft_rgba(verts_ndc, faces, colors, settings, impl)   SoftRas soft z-buffer + soft silhouette
    dibr_rgba(verts_ndc, faces, colors, settings, impl)   DIB-R-style hard interpolation + soft alpha

``impl``: "torch" (the references, any device), "cpp" (CPU kernel), "cuda" (CUDA kernel) or "auto":
the kernel for the input's device, falling back to torch (logged once, with the reason) when it
cannot be built. ``bench_rgba`` times the implementations side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recon import cameras
from recon.render.base import RasterSettings
from recon.render.dibr_torch import dibr_rgba_torch
from recon.render.impls import CHOICES, IMPLS, ImplChoice
from recon.render.rgba_ext import dibr_rgba_ext, load_extension, soft_rgba_ext
from recon.render.softras_rgb_torch import soft_rgba_torch

__all__ = ["IMPLS", "CHOICES", "RGBABenchRecord", "available_impls", "bench_rgba", "dibr_rgba", "resolve_impl",
           "rgba_ratios", "soft_rgba"]

_CHOICE = ImplChoice("rgba", load_extension)


def available_impls(device: torch.device | str = "cpu") -> dict[str, str | None]:
    """``{impl: None}`` for each RGBA implementation that can run on ``device``, else the reason
    (builds the kernels on first use)."""
    return _CHOICE.available(device)


def resolve_impl(requested: str, device: torch.device) -> str:
    """The implementation that runs tensors on ``device`` for ``requested`` ("auto" or an impl).

    Raises:
        ValueError: unknown impl, or a kernel asked for tensors of another device.
    """
    return _CHOICE.resolve(requested, device)


def soft_rgba(verts_ndc: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor, settings: RasterSettings,
              impl: str = "auto") -> torch.Tensor:
    """SoftRas soft z-buffer of projected meshes (options from ``settings``).

    Args:
        verts_ndc: (B, V, 3) NDC x, y and camera depth z.
        faces: (F, 3) int64.
        colors: (B, V, C) per-vertex colours.
        settings: image size, sigma, cutoff, gamma, near, far, background_eps, background (C values).
        impl: "auto", "torch", "cpp" or "cuda".
    Returns:
        (B, C + 1, S, S) colour then alpha.
    """
    s = settings
    opts = dict(gamma=s.gamma, near=s.near, far=s.far, eps=s.background_eps, background=s.background)
    which = resolve_impl(impl, verts_ndc.device)
    if which == "torch":
        return soft_rgba_torch(verts_ndc, faces, colors, s.image_size, s.sigma, s.cutoff_sq, **opts)
    return soft_rgba_ext(verts_ndc, faces, colors, s.image_size, s.sigma, s.cutoff_sq, kind=which, **opts)


def dibr_rgba(verts_ndc: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor, settings: RasterSettings,
              impl: str = "auto") -> torch.Tensor:
    """DIB-R-style render of projected meshes (image size, sigma, cutoff, background from ``settings``);
    arguments and result as :func:`soft_rgba`."""
    s = settings
    which = resolve_impl(impl, verts_ndc.device)
    if which == "torch":
        return dibr_rgba_torch(verts_ndc, faces, colors, s.image_size, s.sigma, s.cutoff_sq, s.background)
    return dibr_rgba_ext(verts_ndc, faces, colors, s.image_size, s.sigma, s.cutoff_sq, s.background, kind=which)


@dataclass
class RGBABenchRecord:
    render: str  # "soft" or "dibr"
    impl: str
    device: str
    batch: int
    fwd_ms: float
    fwdbwd_ms: float


def bench_rgba(batches: tuple[int, ...] = (16, 64), repeats: int = 5, device: str = "cpu",
               impls: tuple[str, ...] | None = None, image_size: int = 64) -> list[RGBABenchRecord]:
    """Forward and forward+backward (w.r.t. vertices and colours) time of every available RGBA
    implementation, side by side in one process, on the randomly deformed 1280-face template with
    random vertex colours at the standard views. Nothing is asserted.

    Args:
        batches: batch sizes.
        repeats: timed runs per measurement (the median is kept).
        device: "cpu" or "cuda".
        impls: restrict to these implementations.
    Returns:
        One record per (render, impl, batch).
    """
    # imported here: recon.benchmark imports the renderers (and the training stack) itself
    from recon.benchmark import deformed_template, time_fn

    dev = torch.device(device)
    usable = [i for i, why in available_impls(dev).items() if why is None and (not impls or i in impls)]
    settings = RasterSettings(image_size=image_size)
    renders = {"soft": soft_rgba, "dibr": dibr_rgba}
    records: list[RGBABenchRecord] = []
    for batch in batches:
        verts, faces = deformed_template(batch, dev)
        az = cameras.view_azimuths(torch.arange(batch) % cameras.NUM_VIEWS).to(dev)
        ndc = cameras.project(verts, az).detach()
        colors = torch.rand(batch, verts.shape[1], 3, generator=torch.Generator().manual_seed(batch)).to(dev)
        for name, render in renders.items():
            for impl in usable:
                fwd = time_fn(lambda: render(ndc, faces, colors, settings, impl), dev, repeats)

                def fb() -> None:
                    x, c = ndc.clone().requires_grad_(True), colors.clone().requires_grad_(True)
                    render(x, faces, c, settings, impl).sum().backward()

                records.append(RGBABenchRecord(name, impl, device, batch, fwd, time_fn(fb, dev, repeats)))
    return records


def rgba_ratios(records: list[RGBABenchRecord]) -> dict[str, float]:
    """Speedups of the kernels over the torch reference at equal render and batch, forward+backward:
    ``{"soft torch/cpp@64": 16.1, ...}``."""
    by = {(r.render, r.impl, r.batch): r for r in records}
    return {f"{render} torch/{impl}@{batch}": by[(render, "torch", batch)].fwdbwd_ms / r.fwdbwd_ms
            for (render, impl, batch), r in by.items() if impl != "torch" and (render, "torch", batch) in by}
