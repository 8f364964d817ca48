"""Renderer and training-step benchmarks: every available implementation measured side by side
in one process, so ratios are meaningful on a shared, noisy machine. Nothing here asserts on time.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from recon import cameras
from recon.config import TrainConfig
from recon.mesh import icosphere
from recon.metrics import voxelize
from recon.models import Reconstructor
from recon.render import RasterSettings, get_renderer
from recon.render.softras import IMPLS, available_impls, make_renderer
from recon.render.softras_dense import soft_silhouette_dense
from recon.training import SilhouetteObjective, make_optimizer, schedule

__all__ = ["BenchRecord", "deformed_template", "time_fn", "bench_renderers", "bench_train_step",
           "bench_voxelize", "renderer_ratios"]


@dataclass
class BenchRecord:
    impl: str
    device: str
    batch: int
    fwd_ms: float
    fwdbwd_ms: float
    per_image_fwdbwd_ms: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def deformed_template(batch: int, device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of randomly (smoothly) deformed 1280-face template spheres of radius ~0.3-0.45.

    Returns:
        verts (B, 642, 3), faces (1280, 3).
    """
    g = torch.Generator().manual_seed(seed)
    v, f = icosphere(3)
    scale = 0.3 + 0.15 * torch.rand(batch, 1, 3, generator=g)
    bumps = 1 + 0.15 * torch.sin(3 * v[None] @ torch.randn(batch, 3, 3, generator=g))
    return (v[None] * scale * bumps).to(device), f.to(device)


def bench_renderers(batches: tuple[int, ...] = (1, 16, 64), device: str = "cpu", repeats: int = 5,
                    dense_batch: int = 1, image_size: int = 64, sigma: float = 1e-4,
                    impls: tuple[str, ...] | None = None) -> list[BenchRecord]:
    """Forward and forward+backward time of every available softras implementation, plus the dense
    oracle at ``dense_batch`` (its per-image time is comparable to the others')."""
    dev = torch.device(device)
    usable = [i for i, why in available_impls(device).items() if why is None]
    if impls:
        usable = [i for i in usable if i in impls]
    settings = RasterSettings(image_size=image_size, sigma=sigma)
    records: list[BenchRecord] = []
    for batch in batches:
        verts, faces = deformed_template(batch, dev)
        az = cameras.view_azimuths(torch.arange(batch) % cameras.NUM_VIEWS).to(dev)
        for impl in [i for i in IMPLS if i in usable]:
            r = make_renderer(settings, impl=impl, device=device)
            ndc = r.project(verts, az).detach()
            fwd = time_fn(lambda: r.rasterize_ndc(ndc, faces), dev, repeats)

            def fb() -> None:
                x = ndc.clone().requires_grad_(True)
                r.rasterize_ndc(x, faces).sum().backward()

            fb_ms = time_fn(fb, dev, repeats)
            records.append(BenchRecord(impl, device, batch, fwd, fb_ms, fb_ms / batch))
    verts, faces = deformed_template(dense_batch, dev)
    r = make_renderer(settings, impl="torch", device=device)
    ndc = r.project(verts, cameras.view_azimuths(torch.zeros(dense_batch, dtype=torch.long)).to(dev)).detach()
    fwd = time_fn(lambda: soft_silhouette_dense(ndc, faces, image_size, sigma), dev, max(2, repeats // 2))

    def fb_dense() -> None:
        x = ndc.clone().requires_grad_(True)
        soft_silhouette_dense(x, faces, image_size, sigma).sum().backward()

    fb_ms = time_fn(fb_dense, dev, max(2, repeats // 2))
    records.append(BenchRecord("dense", device, dense_batch, fwd, fb_ms, fb_ms / dense_batch))
    return records


def renderer_ratios(records: list[BenchRecord]) -> dict[str, float]:
    """Speedups (forward+backward): torch/cpp and torch/cuda at equal batch; dense/x per image."""
    by = {(r.impl, r.batch): r for r in records}
    dense = next((r for r in records if r.impl == "dense"), None)
    out: dict[str, float] = {}
    for (impl, batch), r in by.items():
        if impl in ("cpp", "cuda") and ("torch", batch) in by:
            out[f"torch/{impl}@{batch}"] = by[("torch", batch)].fwdbwd_ms / r.fwdbwd_ms
        if impl != "dense" and dense is not None:
            out[f"dense/{impl}@{batch} per image"] = dense.per_image_fwdbwd_ms / r.per_image_fwdbwd_ms
    return out


def bench_train_step(batch: int = 64, device: str = "cpu", impl: str = "auto", encoder: str = "baseline",
                     repeats: int = 3, cfg: TrainConfig | None = None) -> dict[str, float]:
    """One training step of ``cfg`` (default: the ``TrainConfig`` defaults with ``encoder``, ``impl`` and
    ``batch``): 2B images -> 4B renders, the real objective and optimizer at step 0 of the schedule,
    split into network, render and loss, forward and backward each timed separately (the backward
    pass is chained by hand across the three parts), on random 64x64 images with binary alpha.

    Returns:
        milliseconds for ``network``, ``render``, ``loss``, ``optimizer``, ``total``, the ``render_fraction``
        and the softras ``impl`` used.
    """
    cfg = cfg or TrainConfig(encoder=encoder, impl=impl, batch_size=batch)
    batch = cfg.batch_size
    dev = torch.device(device)
    torch.manual_seed(cfg.seed)
    model = Reconstructor(cfg.encoder).to(dev)
    lr, sigma = schedule(cfg, 0)
    renderer = get_renderer(cfg.backend, sigma=sigma, impl=cfg.impl, device=device)
    objective = SilhouetteObjective.from_config(cfg, model).to(dev)
    opt = make_optimizer(model, lr)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2 * batch, 4, 64, 64, generator=g)
    images[:, 3] = (images[:, 3] > 0.5).float()  # the alpha channel is the silhouette target
    pairs = {"image_a": images[:batch].to(dev), "image_b": images[batch:].to(dev),
             "view_a": torch.randint(0, cameras.NUM_VIEWS, (batch,), generator=g),
             "view_b": torch.randint(0, cameras.NUM_VIEWS, (batch,), generator=g)}
    acc: dict[str, list[float]] = {k: [] for k in ("network", "render", "loss", "optimizer")}

    def clock() -> float:
        _sync(dev)
        return time.perf_counter()

    for it in range(repeats + 1):
        t0 = clock()
        verts = model(torch.cat([pairs["image_a"], pairs["image_b"]]))
        t1 = clock()
        v_in = verts.detach().requires_grad_(True)
        sil = objective.render(renderer, model.faces, v_in, pairs)
        t2 = clock()
        s_in = sil.detach().requires_grad_(True)
        objective.losses(v_in, s_in, pairs)["loss"].backward()
        t3 = clock()
        sil.backward(s_in.grad)
        t4 = clock()
        opt.zero_grad(set_to_none=True)
        verts.backward(v_in.grad)
        t5 = clock()
        opt.step()
        t6 = clock()
        if it == 0:
            continue  # warm-up (kernel build, allocator)
        acc["network"].append((t1 - t0) + (t5 - t4))
        acc["render"].append((t2 - t1) + (t4 - t3))
        acc["loss"].append(t3 - t2)
        acc["optimizer"].append(t6 - t5)
    out = {k: statistics.median(v) * 1e3 for k, v in acc.items()}
    out["total"] = sum(out.values())
    out["render_fraction"] = out["render"] / out["total"]
    out["impl"] = getattr(renderer, "impl", cfg.impl)
    return out


def bench_voxelize(batch: int = 64, repeats: int = 3) -> float:
    """Closed-mesh voxelization throughput at 32^3 (meshes/s) on 1280-face deformed spheres."""
    verts, faces = deformed_template(batch, torch.device("cpu"))
    ms = time_fn(lambda: voxelize(verts, faces), torch.device("cpu"), repeats)
    return batch / (ms / 1e3)


def records_as_dicts(records: list[BenchRecord]) -> list[dict]:
    return [asdict(r) for r in records]
