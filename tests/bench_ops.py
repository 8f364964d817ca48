"""Timing helpers only the tests call: the RGBA ops' implementations side by side
(``bench_rgba``) and the SoftRas voxelizer's speed (``bench_voxelize_softras``). Nothing asserts on
time here; the tests check the records' shape."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from recon import cameras
from recon.ops.rgba import available_impls, dibr_rgba, soft_rgba
from recon.ops.settings import RasterSettings
from recon.ops.voxelize_softras import voxelize_softras
from tools.bench import time_fn
from tools.meshes import deformed_spheres


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
    dev = torch.device(device)
    usable = [i for i, why in available_impls(dev).items() if why is None and (not impls or i in impls)]
    settings = RasterSettings(image_size=image_size)
    renders = {"soft": soft_rgba, "dibr": dibr_rgba}
    records: list[RGBABenchRecord] = []
    for batch in batches:
        verts, faces = deformed_spheres(batch, 3, dev)
        az = cameras.view_azimuths(torch.arange(batch) % cameras.NUM_VIEWS).to(dev)
        ndc = cameras.project(verts, az).detach()
        colours = torch.rand(batch, verts.shape[1], 3, generator=torch.Generator().manual_seed(batch)).to(dev)
        for name, render in renders.items():
            for impl in usable:
                fwd = time_fn(lambda: render(ndc, faces, colours, settings, impl), dev, repeats)

                def fb() -> None:
                    x, c = ndc.clone().requires_grad_(True), colours.clone().requires_grad_(True)
                    render(x, faces, c, settings, impl).sum().backward()

                records.append(RGBABenchRecord(name, impl, device, batch, fwd, time_fn(fb, dev, repeats)))
    return records


def rgba_ratios(records: list[RGBABenchRecord]) -> dict[str, float]:
    """Speedups of the kernels over the torch reference at equal render and batch, forward+backward:
    ``{"soft torch/cpp@64": 16.1, ...}``."""
    by = {(r.render, r.impl, r.batch): r for r in records}
    return {f"{render} torch/{impl}@{batch}": by[(render, "torch", batch)].fwdbwd_ms / r.fwdbwd_ms
            for (render, impl, batch), r in by.items() if impl != "torch" and (render, "torch", batch) in by}


def bench_voxelize_softras(batch: int = 64, repeats: int = 3, impl: str = "auto", resolution: int = 32,
                           seed: int = 0) -> float:
    """Measured speed of :func:`voxelize_softras` on randomly deformed template spheres.

    The meshes are smoothly deformed 642-vertex / 1280-face spheres (``tools.meshes.deformed_spheres``),
    like early predictions.

    Args:
        batch: meshes per call; repeats: timed calls (the best is kept); impl: as
            :func:`voxelize_softras`; resolution: R; seed: of the deformation.
    Returns:
        Meshes per second (best of ``repeats`` calls on one batch, after one warm-up call that
        also builds the kernel).
    """
    verts, f = deformed_spheres(batch, 3, "cpu", seed)
    voxelize_softras(verts[:1], f, resolution, impl)  # warm-up (and kernel build)
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        voxelize_softras(verts, f, resolution, impl)
        best = min(best, time.perf_counter() - t0)
    return batch / best
