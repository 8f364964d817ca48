"""Dense oracles of the two RGBA renders: every pixel against every face, plain autograd.

Obviously-correct definitions the windowed references are tested against (tests only: they
allocate ``B x S*S x F`` tensors):

* :func:`soft_rgba_dense`: SoftRas' soft z-buffer (see :mod:`recon.ops.rgba_soft_torch`).
  Its pair rule (inside, or ``d^2 < cutoff_sq``) is part of the definition: a culled face could
  otherwise still win the depth softmax.
* :func:`dibr_rgba_dense`: the DIB-R-style render (see :mod:`recon.ops.rgba_dibr_torch`): the nearest
  covering face's interpolated colour, alpha 1 on covered pixels and
  ``1 - prod(1 - exp(-d^2 / sigma))`` over all faces elsewhere (no culling).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from recon import cameras
from recon.ops.rgba_dibr_torch import MIN_EXPONENT

__all__ = ["soft_rgba_dense", "dibr_rgba_dense"]


def _dense_geometry(verts_ndc: torch.Tensor, faces: torch.Tensor, image_size: int) -> dict[str, torch.Tensor]:
    """Per (batch, pixel, face) distance, inside test, barycentrics and helpers (B, P, F, ...)."""
    fv = verts_ndc[:, faces.long()]  # (B, F, 3, 3)
    a = fv[..., :2]
    e = a.roll(-1, dims=2) - a
    valid = (fv[..., 2] > 0).all(-1)  # (B, F)
    p = cameras.pixel_centers(image_size, dtype=verts_ndc.dtype, device=verts_ndc.device).reshape(1, -1, 1, 1, 2)
    ap = p - a[:, None]  # (B, P, F, 3, 2)
    ee = e[:, None]
    len2 = (ee * ee).sum(-1)
    nonzero = len2 > 0
    t = torch.where(nonzero, (ap * ee).sum(-1) / torch.where(nonzero, len2, torch.ones_like(len2)),
                    torch.zeros_like(len2)).clamp(0.0, 1.0)
    diff = ap - t[..., None] * ee
    d2 = (diff * diff).sum(-1).min(-1).values  # (B, P, F)
    cross = ee[..., 0] * ap[..., 1] - ee[..., 1] * ap[..., 0]  # (B, P, F, 3)
    x0, y0 = a[..., 0, 0], a[..., 0, 1]
    area2 = (a[..., 1, 0] - x0) * (a[..., 2, 1] - y0) - (a[..., 1, 1] - y0) * (a[..., 2, 0] - x0)  # (B, F)
    nondeg = area2 != 0
    with torch.no_grad():
        inside = ((cross >= 0).all(-1) | (cross <= 0).all(-1)) & nondeg[:, None]
    safe_area = torch.where(nondeg, area2, torch.ones_like(area2))[:, None, :, None]
    w = cross.roll(-1, dims=-1) / safe_area  # (B, P, F, 3); w_{k+2} = cross_k / area2
    return {"d2": d2, "inside": inside, "valid": valid[:, None].expand_as(d2), "nondeg": nondeg[:, None].expand_as(d2),
            "w": w, "z": fv[..., 2][:, None].expand_as(w)}


def _face_colours(colours: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(B, V, C) -> (B, 1, F, 3, C)."""
    return colours[:, faces.long()][:, None]


def soft_rgba_dense(verts_ndc: torch.Tensor, faces: torch.Tensor, colours: torch.Tensor, image_size: int,
                    sigma: float, cutoff_sq: float, gamma: float = 1e-4, near: float = 1.0, far: float = 100.0,
                    eps: float = 1e-3, background: tuple[float, ...] = (0.0, 0.0, 0.0)) -> torch.Tensor:
    """SoftRas soft z-buffer by brute force; same arguments and result as ``soft_rgba_torch``."""
    b, s, nc = verts_ndc.shape[0], image_size, colours.shape[-1]
    g = _dense_geometry(verts_ndc, faces, s)
    d2, inside = g["d2"], g["inside"]
    sign = torch.where(inside, 1.0, -1.0).to(verts_ndc.dtype)
    keep = g["valid"] & (inside | (d2 < cutoff_sq))
    log_not = torch.where(keep, F.logsigmoid(-sign * d2 / sigma), torch.zeros_like(d2))
    alpha = -torch.expm1(log_not.sum(-1))  # (B, P)

    u = g["w"].clamp(0.0, 1.0)
    wc = u / u.sum(-1, keepdim=True)
    zp = 1.0 / (wc / g["z"]).sum(-1)  # (B, P, F)
    with torch.no_grad():
        coloured = keep & g["nondeg"] & (zp >= near) & (zp <= far)
    zn = (far - zp) / (far - near)
    zn = torch.where(coloured, zn, torch.full_like(zn, eps))  # unselected values must stay finite
    with torch.no_grad():
        zmax = zn.max(-1, keepdim=True).values.clamp(min=eps)
    weight = torch.where(coloured, torch.sigmoid(sign * d2 / sigma) * torch.exp((zn - zmax) / gamma),
                         torch.zeros_like(zn))
    col = (wc[..., None] * _face_colours(colours, faces)).sum(-2)  # (B, P, F, C)
    bg_w = torch.exp((eps - zmax[..., 0]) / gamma)  # (B, P)
    bg = torch.as_tensor(background, dtype=verts_ndc.dtype, device=verts_ndc.device)
    rgb = (bg_w[..., None] * bg + (weight[..., None] * col).sum(-2)) / (bg_w + weight.sum(-1))[..., None]
    return torch.cat([rgb, alpha[..., None]], -1).reshape(b, s, s, nc + 1).permute(0, 3, 1, 2)


def dibr_rgba_dense(verts_ndc: torch.Tensor, faces: torch.Tensor, colours: torch.Tensor, image_size: int,
                    sigma: float, background: tuple[float, ...] = (0.0, 0.0, 0.0)) -> torch.Tensor:
    """DIB-R-style render by brute force; same arguments and result as ``dibr_rgba_torch`` without
    its culling (``cutoff_sq``)."""
    b, s, nc = verts_ndc.shape[0], image_size, colours.shape[-1]
    g = _dense_geometry(verts_ndc, faces, s)
    d2, inside, w = g["d2"], g["inside"] & g["valid"], g["w"]
    with torch.no_grad():
        safe_w = torch.where(inside[..., None], w, torch.ones_like(w))
        depth = torch.where(inside, 1.0 / (safe_w / g["z"]).sum(-1), torch.full_like(d2, float("inf")))
        nearest = depth.argmin(-1)  # first minimum, like the kernels' strict "nearer than"
        covered = inside.any(-1)  # (B, P)
    w_sel = w.gather(2, nearest[..., None, None].expand(-1, -1, 1, 3))[:, :, 0]  # (B, P, 3)
    c_sel = colours[:, faces.long()][torch.arange(b, device=colours.device)[:, None], nearest]  # (B, P, 3, C)
    rgb_cov = (w_sel[..., None] * c_sel).sum(-2)
    bg = torch.as_tensor(background, dtype=verts_ndc.dtype, device=verts_ndc.device)
    rgb = torch.where(covered[..., None], rgb_cov, bg.expand_as(rgb_cov))
    x = (d2 / sigma).clamp(min=MIN_EXPONENT)
    outside = g["valid"] & ~inside
    log_not = torch.where(outside, torch.log(-torch.expm1(-torch.where(outside, x, torch.ones_like(x)))),
                          torch.zeros_like(x))
    alpha = torch.where(covered, torch.ones_like(d2[..., 0]), -torch.expm1(log_not.sum(-1)))
    return torch.cat([rgb, alpha[..., None]], -1).reshape(b, s, s, nc + 1).permute(0, 3, 1, 2)
