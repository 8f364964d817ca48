"""The ``bench`` section: renderer timings side by side, backend agreement, the training-step split."""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from recon import cameras
from tools.bench import bench_train_step, time_fn
from tools.meshes import deformed_spheres, projected
from tools.gpucheck.plans import Plan
from recon.ops import silhouette_ext as softras_ext
from recon.render import BackendUnavailable, RasterSettings, get_renderer
from recon.ops.silhouette_torch import soft_silhouette_torch

__all__ = ["bench", "backend_agreement"]


def _bench_pair(fn: Callable[[torch.Tensor], torch.Tensor], ndc: torch.Tensor, device: torch.device,
                repeats: int) -> tuple[float, float]:
    """(forward ms, forward+backward ms), medians."""
    fwd = time_fn(lambda: fn(ndc), device, repeats)

    def fb() -> None:
        x = ndc.clone().requires_grad_(True)
        fn(x).sum().backward()

    return fwd, time_fn(fb, device, repeats)


def bench(plan: Plan, deadline: float) -> dict[str, Any]:
    """Renderer timings, backend agreement and the training-step split (see the package doc)."""
    device = torch.device(plan.device)
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for size, batch, sub in plan.bench_grid:
        if time.time() > deadline:
            skipped.append(f"{size} px, batch {batch}, {20 * 4 ** sub} faces (time budget)")
            continue
        ndc, faces = projected(batch, sub, device, seed=batch)
        st = RasterSettings(image_size=size)

        def reference(v: torch.Tensor) -> torch.Tensor:
            return soft_silhouette_torch(v, faces, size, st.sigma, st.cutoff_sq)

        impls: list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = [("torch", reference)]
        for label, kind, det in plan.variants:
            def kernel(v: torch.Tensor, kind: str = kind, det: bool = det) -> torch.Tensor:
                return softras_ext.soft_silhouette_ext(v, faces, size, st.sigma, st.cutoff_sq, kind=kind,
                                                       deterministic=det)

            impls.append((label, kernel))
        for label, fn in impls:
            fwd, fb = _bench_pair(fn, ndc, device, plan.bench_repeats)
            rows.append({"impl": label, "device": device.type, "size": size, "batch": batch, "faces": faces.shape[0],
                         "fwd_ms": fwd, "fwdbwd_ms": fb, "per_image_fwdbwd_ms": fb / batch})
    agreement: list[dict[str, Any]] = []
    if plan.other_backends:
        rows += _other_backend_rows(device, plan.bench_repeats)
        agreement = backend_agreement(device)
    step = None
    if time.time() < deadline:
        step = bench_train_step(batch=plan.step_batch, device=device.type, repeats=3 if plan.bench_repeats > 2 else 1)
    else:
        skipped.append("training step (time budget)")
    return {"rows": rows, "ratios": _bench_ratios(rows), "train_step": step, "agreement": agreement,
            "skipped": skipped, "status": "passed"}


def _other_backend_rows(device: torch.device, repeats: int) -> list[dict[str, Any]]:
    """kaolin / nvdiffrast timings at 64 px, batch 16 and 64, where they can run."""
    rows = []
    for name in ("kaolin", "nvdiffrast"):
        try:
            r = get_renderer(name, image_size=64, device=str(device))
        except BackendUnavailable:
            continue
        for batch in (16, 64):
            ndc, faces = projected(batch, 3, device, seed=batch)
            fwd, fb = _bench_pair(lambda v: r.rasterize_ndc(v, faces), ndc, device, repeats)
            rows.append({"impl": name, "device": device.type, "size": 64, "batch": batch, "faces": faces.shape[0],
                         "fwd_ms": fwd, "fwdbwd_ms": fb, "per_image_fwdbwd_ms": fb / batch})
    return rows


def _bench_ratios(rows: list[dict[str, Any]]) -> dict[str, float]:
    """torch / kernel forward+backward time at equal size, batch and mesh."""
    by = {(r["impl"], r["size"], r["batch"], r["faces"]): r["fwdbwd_ms"] for r in rows}
    out = {}
    for (impl, size, batch, nf), ms in by.items():
        ref = by.get(("torch", size, batch, nf))
        if impl not in ("torch", "kaolin", "nvdiffrast") and ref:
            out[f"torch/{impl} {size}px B{batch} F{nf}"] = ref / ms
    return out


def backend_agreement(device: torch.device, batch: int = 16, size: int = 64) -> list[dict[str, Any]]:
    """Each usable backend's silhouettes against softras' (torch reference) on the same deformed
    spheres, 64 px, sigma 1e-4: mean |difference| over all pixels and IoU of the > 0.5 masks."""
    verts, faces = deformed_spheres(batch, 3, device, seed=11)
    az = cameras.view_azimuths(torch.arange(batch) % cameras.NUM_VIEWS).to(device)
    ref = get_renderer("softras", impl="torch", image_size=size, device=str(device)).silhouettes(verts, faces, az)
    rows = []
    kernel = "cuda" if device.type == "cuda" else "cpp"
    for name, opts in (("softras", {"impl": kernel}), ("kaolin", {}), ("nvdiffrast", {})):
        try:
            sil = get_renderer(name, image_size=size, device=str(device), **opts).silhouettes(verts, faces, az)
        except BackendUnavailable as e:
            rows.append({"backend": name, "available": False, "reason": str(e).splitlines()[0][:300]})
            continue
        hard, hard_ref = sil > 0.5, ref > 0.5
        rows.append({"backend": f"softras/{kernel}" if name == "softras" else name, "available": True,
                     "mean_abs_diff": float((sil - ref).abs().mean()),
                     "iou_vs_softras": float((hard & hard_ref).sum() / (hard | hard_ref).sum().clamp(min=1)),
                     "mean_silhouette": float(sil.mean()), "mean_silhouette_softras": float(ref.mean())})
    return rows
