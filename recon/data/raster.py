"""Hard (non-differentiable) ground-truth renderer for dataset images.

``render_views`` produces the RGBA images stored in dataset files, seen from the standard
view ring with exactly the projection of the soft rasterizer (``recon.cameras``):

* **alpha** = pixel coverage, estimated with ``supersample x supersample`` sub-pixel samples
  placed at the centres of a regular sub-grid (so ``supersample=1`` samples pixel centres);
  ``alpha = round(255 * covered / supersample^2)``.
* **RGB** = Lambert shading with a z-buffer: each covered sample takes the nearest face
  (perspective-correct depth), shaded ``colour * (ambient + diffuse * max(0, n . l))`` with
  the face normal turned towards the camera (meshes need not be consistently oriented) and
  a light direction fixed in camera space. Samples are averaged over the pixel
  *premultiplied*, i.e. **composited over black**: background pixels (alpha = 0) are
  ``(0, 0, 0)`` and edge pixels are darkened by their coverage. (NMR data, by contrast, are
  rendered on white and inverted; only alpha is used for silhouette training.)

Vectorised scanline rasterization over (view, face) pairs: each pair's bounding box is split
into rows, the covered column interval of each row is solved from the three affine edge
functions, only covered samples are expanded (``repeat_interleave``), and the z-buffer is a
per-sample ``scatter_reduce``. ``recon.mesh.voxels_to_mesh`` builds the exposed faces of an
occupancy grid (our voxel axis order); ``voxel_mask_iou`` uses it to check that stored voxels
project onto stored alpha masks.

The tensors are small (one object): run with ``torch.set_num_threads(1)`` and parallelise
over objects with processes, as the dataset builders do; intra-op threads only add contention.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from recon import cameras
from recon.mesh import voxels_to_mesh

__all__ = ["DEFAULT_LIGHT", "face_shading", "render_views", "voxel_mask_iou"]

# Direction towards the light in the camera frame (x right, y up, z forward into the scene):
# above the camera, slightly to the side, shining towards the scene.
DEFAULT_LIGHT = (0.35, 0.6, -1.0)

# Covered samples expanded at once (bounds peak memory to roughly 100 MB).
_CHUNK = 1 << 21


def _as_tensor(x, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype)


@torch.no_grad()
def face_shading(tri: torch.Tensor, light_dir: Sequence[float] = DEFAULT_LIGHT, ambient: float = 0.35
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat Lambert shade of every face: ``ambient + (1 - ambient) max(0, n . l)``, ``n`` the face
    normal turned towards the camera (at the origin; meshes need not be consistently oriented),
    ``l`` the direction towards the light, both in the camera frame.

    Args:
        tri: (n, F, 3 corners, 3) the faces' corners in the camera frame of each of n views.
    Returns:
        shade: (n, F) in [ambient, 1]; facing: (n, F), < 0 where the face's winding faces the camera.
    """
    normal = torch.cross(tri[:, :, 1] - tri[:, :, 0], tri[:, :, 2] - tri[:, :, 0], dim=-1)
    facing = (normal * tri[:, :, 0]).sum(-1)  # < 0: winding faces the camera
    normal = torch.where(facing[..., None] > 0, -normal, normal)
    normal = torch.nn.functional.normalize(normal, dim=-1, eps=1e-12)
    light = torch.nn.functional.normalize(torch.tensor(list(light_dir), dtype=tri.dtype), dim=0)
    return ambient + (1.0 - ambient) * (normal @ light).clamp_min(0.0), facing


def render_views(
    verts,
    faces,
    view_ids: Sequence[int] | torch.Tensor | None = None,
    image_size: int = cameras.IMAGE_SIZE,
    supersample: int = 3,
    light_dir: tuple[float, float, float] = DEFAULT_LIGHT,
    colour: tuple[float, float, float] = (0.8, 0.8, 0.8),
    ambient: float = 0.35,
    cull_backfaces: bool = False,
    elevation: float = cameras.ELEVATION,
    distance: float = cameras.DISTANCE,
    viewing_angle: float = cameras.VIEWING_ANGLE,
    azimuth_step: float = cameras.AZIMUTH_STEP,
) -> np.ndarray:
    """Render RGBA images of one mesh at the standard views.

    Args:
        verts: (V, 3) float world coordinates (numpy or torch).
        faces: (F, 3) integer vertex indices.
        view_ids: view indices (azimuth ``-azimuth_step * v``); default all 24.
        image_size: S, output is S x S.
        supersample: sub-samples per pixel side for coverage (alpha) and shading.
        light_dir: direction towards the light, camera frame.
        colour: base RGB in [0, 1].
        ambient: ambient term; diffuse weight is ``1 - ambient``.
        cull_backfaces: drop faces whose winding faces away from the camera. Only valid for
            closed, consistently outward-oriented meshes (there it halves the work and changes
            nothing); leave False for arbitrary meshes.
    Returns:
        (len(view_ids), 4, S, S) uint8 RGBA, RGB premultiplied (composited over black).
    """
    if view_ids is None:
        view_ids = range(cameras.NUM_VIEWS)
    views = torch.as_tensor(list(view_ids) if not isinstance(view_ids, torch.Tensor) else view_ids).reshape(-1)
    v = _as_tensor(verts, torch.float32)
    f = _as_tensor(faces, torch.int64)
    if v.dim() != 2 or v.shape[1] != 3:
        raise ValueError(f"verts must have shape (V, 3), got {tuple(v.shape)}")
    if f.dim() != 2 or f.shape[1] != 3:
        raise ValueError(f"faces must have shape (F, 3), got {tuple(f.shape)}")
    if f.numel() and (f.min() < 0 or f.max() >= v.shape[0]):
        raise ValueError(f"face indices out of range [0, {v.shape[0]})")
    if supersample < 1 or image_size < 1:
        raise ValueError("image_size and supersample must be >= 1")
    n, s, ss = views.numel(), int(image_size), int(supersample)
    sf = s * ss
    out = np.zeros((n, 4, s, s), dtype=np.uint8)
    if n == 0 or f.shape[0] == 0:
        return out

    # Camera frame (for normals and depth) and fine-grid pixel coordinates of every vertex.
    azimuth = cameras.view_azimuths(views, azimuth_step)
    eye = cameras.eye_from_angles(azimuth, elevation, distance)
    cam = cameras.look_at(v[None].expand(n, -1, -1), eye)  # (n, V, 3)
    ndc = cameras.perspective(cam, viewing_angle)
    col = (ndc[..., 0] + 1.0) * (sf / 2.0) - 0.5
    row = (1.0 - ndc[..., 1]) * (sf / 2.0) - 0.5

    tri_cam = cam[:, f]  # (n, F, 3, 3)
    shade, facing = face_shading(tri_cam, light_dir, ambient)  # (n, F) each

    # Per (view, face): edge-function coefficients in fine pixel coordinates. Per-face and
    # per-row work is float64 (thin triangles have large coefficients; cracks along shared
    # edges would show as coverage holes); only the per-sample depth is float32.
    x, y = col.double()[:, f], row.double()[:, f]  # (n, F, 3)
    invz = 1.0 / tri_cam[..., 2].double().clamp_min(1e-6)
    x0, x1, x2 = x.unbind(-1)
    y0, y1, y2 = y.unbind(-1)
    area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
    keep = (area.abs() > 1e-9) & (tri_cam[..., 2].min(-1).values > 1e-6)
    if cull_backfaces:
        keep &= facing < 0
    c0 = x.min(-1).values.ceil().clamp(0, sf - 1)
    c1 = x.max(-1).values.floor().clamp(-1, sf - 1)
    r0 = y.min(-1).values.ceil().clamp(0, sf - 1)
    r1 = y.max(-1).values.floor().clamp(-1, sf - 1)
    w = (c1 - c0 + 1).clamp_min(0)
    h = (r1 - r0 + 1).clamp_min(0)
    keep &= (w > 0) & (h > 0)
    vi, fi = keep.nonzero(as_tuple=True)
    if vi.numel() == 0:
        return out
    # Barycentrics as affine functions of (col, row): l_i = a_i * col + b_i * row + c_i.
    x0, x1, x2, y0, y1, y2 = (t[vi, fi] for t in (x0, x1, x2, y0, y1, y2))
    inv_area = 1.0 / area[vi, fi]
    l1 = torch.stack([(y2 - y0), -(x2 - x0), (x2 - x0) * y0 - (y2 - y0) * x0], -1) * inv_area[:, None]
    l2 = torch.stack([-(y1 - y0), (x1 - x0), (y1 - y0) * x0 - (x1 - x0) * y0], -1) * inv_area[:, None]
    l0 = -l1 - l2
    l0[:, 2] += 1.0
    lam = torch.stack([l0, l1, l2], 1)  # (P, 3 barycentrics, 3 coefficients)
    # 1/z is affine in screen space (perspective-correct depth); larger is nearer.
    izc = (invz[vi, fi][:, :, None] * lam).sum(1)  # (P, 3)
    pair_shade = shade[vi, fi]

    # Scanlines: for each (pair, row) the covered columns form one interval, found from the
    # three half-planes l_i >= -eps; only covered samples are ever expanded.
    ph = h[vi, fi].long()
    rid = torch.repeat_interleave(ph, output_size=int(ph.sum()))
    rr = torch.arange(rid.numel()) + torch.index_select(r0[vi, fi].long() - (torch.cumsum(ph, 0) - ph), 0, rid)
    lr = torch.index_select(lam, 0, rid)  # (R, 3, 3)
    a = lr[:, :, 0]
    k = lr[:, :, 1] * rr[:, None] + lr[:, :, 2] + 1e-6
    bound = -k / torch.where(a == 0, torch.ones_like(a), a)
    lo = torch.where(a > 0, bound, -math.inf).amax(1).clamp_min(torch.index_select(c0[vi, fi], 0, rid))
    hi = torch.where(a < 0, bound, math.inf).amin(1).clamp_max(torch.index_select(c1[vi, fi], 0, rid))
    cs = lo.ceil().long()
    cnt = (hi.floor().long() - cs + 1).clamp_min(0)
    cnt[((a == 0) & (k < 0)).any(1)] = 0
    nz = (cnt > 0).nonzero().squeeze(1)
    rid, rr, cs, cnt = rid[nz], rr[nz], cs[nz], cnt[nz]
    # Per scanline: first sample id, its inverse depth and the depth step along the row.
    z = izc[rid]
    line_sid = (vi[rid] * sf + rr) * sf + cs
    line_depth = (z[:, 0] * cs + z[:, 1] * rr + z[:, 2]).float()
    line_step = z[:, 0].float()
    line_shade = pair_shade[rid]

    # Chunk over scanlines so that the expanded sample arrays stay bounded.
    ends = torch.cumsum(cnt, 0)
    chunks, first = [], 0
    while first < rid.numel():
        base = int(ends[first - 1]) if first > 0 else 0
        last = max(int(torch.searchsorted(ends, base + _CHUNK, right=True)), first + 1)
        chunks.append((first, last))
        first = last

    def samples(first: int, last: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c = cnt[first:last]
        total = int(c.sum())
        line = torch.repeat_interleave(c, output_size=total) + first
        local = torch.arange(total) - torch.index_select(torch.cumsum(c, 0) - c, 0, line - first)
        sid = torch.index_select(line_sid, 0, line) + local
        depth = torch.index_select(line_depth, 0, line) + torch.index_select(line_step, 0, line) * local
        return sid, depth, line

    best = torch.full((n * sf * sf,), -1.0)
    best_shade = torch.zeros(n * sf * sf)
    cached = None
    for first, last in chunks:
        cached = samples(first, last)
        best.scatter_reduce_(0, cached[0], cached[1], reduce="amax")
    for first, last in chunks:  # second sweep only re-expands when there was more than one chunk
        sid, depth, line = cached if len(chunks) == 1 else samples(first, last)
        # Shades are > 0 and the buffer starts at 0, so losers scattering 0 change nothing.
        # Ties (shared edges at equal depth) keep the brightest shade: deterministic either way.
        win = depth >= torch.index_select(best, 0, sid)
        best_shade.scatter_reduce_(0, sid, torch.index_select(line_shade, 0, line) * win, reduce="amax")

    covered = _pool((best > 0).float(), n, s, ss)
    lum = _pool(best_shade, n, s, ss)  # zero where uncovered
    img = torch.cat([lum[:, None] * torch.tensor(colour, dtype=torch.float32)[None, :, None, None], covered[:, None]], 1)
    out[:] = (img * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()
    return out


def _pool(fine: torch.Tensor, n: int, s: int, ss: int) -> torch.Tensor:
    """Mean over ``ss x ss`` blocks of a flat (n * (s*ss)^2,) sample buffer -> (n, s, s)."""
    rows = fine.view(n * s, ss, s * ss).sum(1)  # (n*s, s*ss): contiguous adds, fast on CPU
    cols = rows[:, 0::ss]
    for k in range(1, ss):
        cols = cols + rows[:, k::ss]
    return cols.view(n, s, s) / float(ss * ss)


def voxel_mask_iou(voxels, images: np.ndarray, view_ids: Sequence[int] | None = None,
                   supersample: int = 1) -> np.ndarray:
    """Silhouette agreement of an occupancy grid with stored images: render the exposed cube
    faces of ``voxels`` (our axis order) at each view and compare with ``alpha > 127``.

    Args:
        voxels: (R, R, R) bool-like grid over ``[-0.5, 0.5]^3``.
        images: (len(view_ids), 4, S, S) uint8 RGBA.
        view_ids: the views of ``images`` (default ``range(len(images))``).
    Returns:
        (len(view_ids),) float64 mask IoU per view (1.0 where both masks are empty).
    """
    images = np.asarray(images)
    views = list(range(len(images))) if view_ids is None else list(view_ids)

    verts, faces = voxels_to_mesh(voxels)
    rendered = render_views(verts, faces, views, image_size=images.shape[-1], supersample=supersample,
                            cull_backfaces=True)[:, 3] > 127
    masks = images[:, 3] > 127
    inter = (rendered & masks).sum((1, 2))
    union = (rendered | masks).sum((1, 2))
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)
