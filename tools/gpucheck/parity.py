"""The ``parity`` section: every kernel variant against the torch reference (values and gradients)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from tools.meshes import odd_faces, projected
from tools.gpucheck.plans import Plan
from recon.ops import silhouette_ext as softras_ext
from recon.render import RasterSettings
from recon.ops.silhouette_torch import soft_silhouette_torch

__all__ = ["PARITY_CASES", "parity"]


def _grad_of(fn: Callable[[torch.Tensor], torch.Tensor], verts: torch.Tensor, weight: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    v = verts.detach().clone().requires_grad_(True)
    out = fn(v)
    grad, = torch.autograd.grad((out * weight).sum(), v)
    return out.detach(), grad


# name -> (description, mesh maker (device, dtype) -> (verts_ndc, faces), image size, sigma)
PARITY_CASES: dict[str, tuple[str, Callable[[str, torch.dtype], tuple[torch.Tensor, torch.Tensor]], int, float]] = {
    "sphere32": ("1280 faces, B3, 32 px, sigma 1e-3", lambda d, t: projected(3, 3, d, 1, t), 32, 1e-3),
    "sphere64": ("1280 faces, B3, 64 px, sigma 1e-4", lambda d, t: projected(3, 3, d, 2, t), 64, 1e-4),
    "odd24": ("odd faces, B2, 24 px, sigma 3e-3", odd_faces, 24, 3e-3),
    "large128": ("20480 faces, B2, 128 px, sigma 1e-4", lambda d, t: projected(2, 5, d, 3, t), 128, 1e-4),
    "large256": ("20480 faces, B2, 256 px, sigma 1e-4", lambda d, t: projected(2, 5, d, 4, t), 256, 1e-4),
}


def parity(plan: Plan) -> dict[str, Any]:
    """Every kernel variant against the torch reference on its device, the C++ kernel on CPU too
    (``plan.cpu_kind``) and the first variant against it; deterministic variants run twice."""
    fwd_tol, grad_rtol = softras_ext.PARITY_FWD_ATOL, softras_ext.PARITY_GRAD_RTOL
    runs = [(plan.device, plan.variants)]
    if plan.cpu_kind is not None:
        runs.insert(0, ("cpu", (("cpp", plan.cpu_kind, False),)))
    rows: list[dict[str, Any]] = []
    for key in plan.parity_cases:
        name, make, size, sigma = PARITY_CASES[key]
        st = RasterSettings(image_size=size, sigma=sigma)
        for dtype in (torch.float32, torch.float64):
            results: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
            for device, variants in runs:
                verts, faces = make(device, dtype)
                weight = torch.randn(verts.shape[0], size, size, generator=torch.Generator().manual_seed(0),
                                     dtype=dtype).to(device)
                ref = _grad_of(lambda v: soft_silhouette_torch(v, faces, size, sigma, st.cutoff_sq), verts, weight)
                for label, kind, det in variants:
                    def kernel(v: torch.Tensor, kind: str = kind, det: bool = det) -> torch.Tensor:
                        return softras_ext.soft_silhouette_ext(v, faces, size, sigma, st.cutoff_sq, kind=kind,
                                                               deterministic=det)

                    out = _grad_of(kernel, verts, weight)
                    results[label] = (out[0].cpu(), out[1].cpu())
                    rows.append(_parity_row(name, dtype, f"{label} vs torch ({device})", out, ref, fwd_tol, grad_rtol))
                    if det:
                        again = _grad_of(kernel, verts, weight)
                        same = torch.equal(again[0], out[0]) and torch.equal(again[1], out[1])
                        rows.append({"case": name, "dtype": str(dtype).replace("torch.", ""),
                                     "check": f"{label} run twice: bitwise equal", "passed": bool(same)})
            if plan.cpu_kind is not None:
                first = plan.variants[0][0]
                rows.append(_parity_row(name, dtype, f"{first} vs cpp", results[first], results["cpp"], fwd_tol,
                                        grad_rtol))
    failed = [r for r in rows if not r["passed"]]
    return {"rows": rows, "failed": len(failed), "status": "failed" if failed else "passed",
            "tolerances": {"fwd_max_abs": {str(k).replace("torch.", ""): v for k, v in fwd_tol.items()},
                           "grad_rel_l2": grad_rtol}}


def _parity_row(case: str, dtype: torch.dtype, check: str, out: tuple[torch.Tensor, torch.Tensor],
                ref: tuple[torch.Tensor, torch.Tensor], fwd_tol: dict, grad_rtol: float) -> dict[str, Any]:
    (s, g), (s_ref, g_ref) = (t.cpu() for t in out), (t.cpu() for t in ref)
    fwd = float((s - s_ref).abs().max()) if s.numel() else 0.0
    rel = float((g - g_ref).norm() / g_ref.norm().clamp(min=1e-30))
    z_zero = bool((g[..., 2] == 0).all())
    ok = fwd <= fwd_tol[dtype] and rel <= grad_rtol and z_zero and bool(torch.isfinite(g).all())
    return {"case": case, "dtype": str(dtype).replace("torch.", ""), "check": check, "fwd_max_abs": fwd,
            "grad_rel_l2": rel, "passed": ok}
