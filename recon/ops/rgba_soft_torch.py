"""SoftRas colour aggregation (the soft z-buffer) in plain PyTorch: the reference for the kernels.

Per pixel, every kept pair (the silhouette's pair rule, :mod:`recon.ops.window_pairs`) of a face
with non-zero area whose depth lies in ``[near, far]`` contributes its colour with weight
``D_j * exp(z_j / gamma)``; the background colour enters with weight ``exp(eps / gamma)``::

    D_j   = sigmoid(sign * d^2 / sigma)                   (the silhouette's per-pair probability)
    w     = screen-space barycentrics of the pixel centre, clamped to [0, 1] and renormalised
    z_p   = 1 / sum_k (w_k / z_k)                          (perspective-correct depth at w)
    z_j   = (far - z_p) / (far - near)                     (normalised depth, 1 at near, 0 at far)
    c_j   = sum_k w_k c_k                                  (per-vertex colours)
    rgb   = (bg exp(eps / gamma) + sum_j D_j exp(z_j / gamma) c_j) / (exp(eps / gamma) + sum_j D_j exp(z_j / gamma))
    alpha = 1 - prod_j (1 - D_j)                           (the silhouette)

Facts from SoftRas (``soft_renderer/cuda/soft_rasterize_cuda_kernel.cu``, ``functional/soft_rasterize.py``):
the weights are stabilised with the running maximum of ``z_j`` (initialised to ``eps``), the
normalised depth is *linear* in depth, ``(far - z_p) / (far - near)`` (the paper writes it with
inverse depths; we follow the released kernel), faces are drawn from both sides (SoftRenderer's
``fill_back=True``), and the defaults are ``gamma = 1e-4``, ``near = 1``, ``far = 100``,
``eps = 1e-3``, background black, ``dist_eps = 1e-4`` (our ``RasterSettings.eps``) and
``sigma = 1e-5`` (its recon example trains at ``1e-4``, our ``RasterSettings.sigma``).
Differences, ours: a zero-area face contributes to alpha only (it has no surface to colour), and the
gradient is exact: SoftRas' kernel drops the terms through the barycentrics (colour and depth w.r.t.
x, y); here they are kept, so ``gradcheck`` holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from recon.ops.checks import check_face_indices, check_mesh_shapes
from recon.ops.window_pairs import (WindowPairs, barycentric, edge_functions, pair_distance_sq, pixel_xy,
                                       window_pairs)

__all__ = ["soft_rgba_torch", "check_rgba_inputs", "RGBAPairs", "rgba_pairs", "rgba_image"]


def check_rgba_inputs(verts_ndc: torch.Tensor, faces: torch.Tensor, colours: torch.Tensor) -> None:
    """One-line ``ValueError`` for misshapen inputs of the RGBA renders."""
    check_mesh_shapes(verts_ndc, faces)
    if colours.dim() != 3 or colours.shape[:2] != verts_ndc.shape[:2]:
        raise ValueError(f"colours must be (B, V, C) with (B, V) = {tuple(verts_ndc.shape[:2])}, "
                         f"got {tuple(colours.shape)}")


@dataclass
class RGBAPairs:
    """Checked inputs of a torch RGBA render and its kept pixel-face pairs (no gradient).

    Attributes:
        faces: (F, 3) int64 on the device of the vertices.
        background: (C,) background colour, dtype of the vertices.
        pairs: the kept pairs (:func:`recon.ops.window_pairs.window_pairs`).
        face_verts: (P, 3) rows of each pair's face vertices in the flat (B * V, ...) vertex table.
        centres: (P, 2) NDC centres of each pair's pixel.
    """

    faces: torch.Tensor
    background: torch.Tensor
    pairs: WindowPairs
    face_verts: torch.Tensor
    centres: torch.Tensor


def rgba_pairs(verts_ndc: torch.Tensor, faces: torch.Tensor, colours: torch.Tensor, image_size: int, cutoff_sq: float,
               background: tuple[float, ...] | torch.Tensor) -> RGBAPairs:
    """Check the inputs of an RGBA render (one-line ``ValueError``, face indices included) and enumerate its pairs."""
    check_rgba_inputs(verts_ndc, faces, colours)
    check_face_indices(faces, verts_ndc.shape[1])
    faces = faces.to(device=verts_ndc.device, dtype=torch.long)
    bg = torch.as_tensor(background, dtype=verts_ndc.dtype, device=verts_ndc.device).reshape(-1)
    if bg.numel() != colours.shape[-1]:
        raise ValueError(f"background must have {colours.shape[-1]} values (one per colour channel), got {bg.numel()}")
    pairs = window_pairs(verts_ndc, faces, int(image_size), cutoff_sq)
    with torch.no_grad():
        face_verts = pairs.vertex_rows(faces, verts_ndc.shape[1])
        centres = pixel_xy(pairs.pixel, int(image_size), verts_ndc.dtype)
    return RGBAPairs(faces, bg, pairs, face_verts, centres)


def rgba_image(rgb: torch.Tensor, alpha: torch.Tensor, batch: int, image_size: int) -> torch.Tensor:
    """(B * S * S, C) colours and (B * S * S,) alpha -> the (B, C + 1, S, S) image."""
    s, nc = image_size, rgb.shape[-1]
    return torch.cat([rgb, alpha[:, None]], dim=1).reshape(batch, s, s, nc + 1).permute(0, 3, 1, 2).contiguous()


def soft_rgba_torch(verts_ndc: torch.Tensor, faces: torch.Tensor, colours: torch.Tensor, image_size: int,
                    sigma: float, cutoff_sq: float, gamma: float = 1e-4, near: float = 1.0, far: float = 100.0,
                    eps: float = 1e-3, background: tuple[float, ...] | torch.Tensor = (0.0, 0.0, 0.0)
                    ) -> torch.Tensor:
    """Soft z-buffered colour plus soft silhouette, windowed (never dense), differentiable.

    Args:
        verts_ndc: (B, V, 3) float32/float64 NDC x, y and camera depth z.
        faces: (F, 3) int64 vertex indices shared by the batch.
        colours: (B, V, C) per-vertex colours (C = 3 for RGB), dtype of ``verts_ndc``.
        image_size: S.
        sigma: silhouette sharpness (> 0).
        cutoff_sq: outside pairs with ``d^2 >= cutoff_sq`` are dropped (``RasterSettings.cutoff_sq``).
        gamma: depth-softmax temperature (> 0).
        near, far: depth range; pairs whose depth is outside it add no colour.
        eps: normalised depth of the background.
        background: C background colour values.
    Returns:
        (B, C + 1, S, S): colour channels then alpha, row 0 at the top; differentiable w.r.t.
        ``verts_ndc`` (x, y, and z through the depth weights) and ``colours``.
    """
    r = rgba_pairs(verts_ndc, faces, colours, image_size, cutoff_sq, background)
    pairs, face_verts, p = r.pairs, r.face_verts, r.centres
    b, v, nc = *verts_ndc.shape[:2], colours.shape[-1]
    s, dtype, device = int(image_size), verts_ndc.dtype, verts_ndc.device
    npix = b * s * s
    with torch.no_grad():
        inv_sigma = torch.tensor(1.0 / sigma, dtype=dtype, device=device)
        coef = torch.where(pairs.inside, -inv_sigma, inv_sigma)  # log(1 - D) = logsigmoid(coef * d^2)

    flat = verts_ndc.reshape(b * v, 3)
    xy, z = flat[:, :2], flat[:, 2]
    arg = coef * pair_distance_sq(xy, face_verts, pairs, p)
    log_sum = torch.zeros(npix, dtype=dtype, device=device).index_add(0, pairs.pixel, F.logsigmoid(arg))
    alpha = -torch.expm1(log_sum)

    # Colour: only pairs of faces with an area, whose depth at the clamped barycentrics is in range.
    with torch.no_grad():
        fxy = xy.detach()[face_verts]
        _, area2 = edge_functions(fxy, p)
        coloured = area2 != 0
    sel = coloured.nonzero()[:, 0]
    fv_sel, p_sel, pix_sel = face_verts[sel], p[sel], pairs.pixel[sel]
    w = barycentric(xy[fv_sel], p_sel)
    u = w.clamp(0.0, 1.0)
    wc = u / u.sum(-1, keepdim=True)  # the sum is >= 1: barycentrics sum to 1
    zp = 1.0 / (wc / z[fv_sel]).sum(-1)
    with torch.no_grad():
        in_range = (zp >= near) & (zp <= far)
    keep = in_range.nonzero()[:, 0]
    wc, zp, fv_sel, pix_sel, arg_sel = wc[keep], zp[keep], fv_sel[keep], pix_sel[keep], arg[sel][keep]
    zn = (far - zp) / (far - near)
    with torch.no_grad():  # stabiliser: the per-pixel maximum depth term (cancels out exactly)
        zmax = torch.full((npix,), float(eps), dtype=dtype, device=device)
        zmax = zmax.scatter_reduce(0, pix_sel, zn.detach(), reduce="amax", include_self=True)
    weight = torch.sigmoid(-arg_sel) * torch.exp((zn - zmax[pix_sel]) / gamma)  # D * exp((z - max) / gamma)
    col = (wc[..., None] * colours.reshape(b * v, nc)[fv_sel]).sum(1)  # (P', C)
    bg_weight = torch.exp((eps - zmax) / gamma)  # (npix,)
    den = bg_weight.index_add(0, pix_sel, weight)
    num = (bg_weight[:, None] * r.background).index_add(0, pix_sel, weight[:, None] * col)
    return rgba_image(num / den[:, None], alpha, b, s)
