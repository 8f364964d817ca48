"""Interactive 3D viewer pages: a grid of cards, each with the input image, a caption and the
predicted mesh (vertex colours) that the mouse orbits. Self-contained HTML that works offline from
a file:// URL.

How it stays offline and robust:
* three.js (r187, MIT) is vendored as one minified classic (non-module) script,
  ``vendor/three-viewer.min.js`` (how it is built: ``vendor/README.md``), and inlined into the page
  with our ``viewer.js``; Chromium refuses ES-module scripts and ``fetch`` from file:// URLs.
* Meshes are inlined as base64 typed arrays (float32 positions, sRGB bytes, uint32 faces; identical
  face arrays stored once) and built into geometry directly: no loader, no request, no data URI fetch.
* One WebGL context draws every card into its own 2D canvas (browsers cap live contexts at ~16).

The 3D view starts at the camera of the input view, so it shows what the input image shows. The
dataset's SoftRas camera puts world +x on the image's right seen from -z, the mirror image of a
right-handed viewer (three.js, glTF); the page mirrors x (and flips face winding) to match. Saved
mesh files keep the raw coordinates.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from PIL import Image

from recon import cameras
from recon.errors import InputError
from recon.io import atomic_write_bytes
from recon.report.mesh_export import DEFAULT_GREY
from recon.report.figures import MANIFEST_NAME, prediction_mesh_name
from recon.report.format import fmt
from recon.evaluate import Prediction


__all__ = ["ViewerItem", "viewer_items", "viewer_items_from_meshes", "viewer_fragment", "viewer_page",
           "write_viewer_page"]

_HERE = Path(__file__).resolve().parent
_VENDOR_JS = _HERE / "vendor" / "three-viewer.min.js"
_VIEWER_JS = _HERE / "viewer.js"
_CANVAS_PX = 240  # CSS size of each 3D view

_CSS = """.rv-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(400px,1fr));gap:14px;margin:1em 0}
.rv-card{border:1px solid #d9dde3;border-radius:8px;padding:10px;background:#fff;box-shadow:0 1px 2px rgba(0,0,0,.05)}
.rv-pair{display:flex;gap:10px;align-items:flex-start;justify-content:center}
.rv-input{width:128px;height:128px;image-rendering:pixelated;border:1px solid #e3e6ea;border-radius:4px;flex:none}
.rv-canvas{width:%dpx;height:%dpx;flex:none;border-radius:6px;cursor:grab;touch-action:none;
background:radial-gradient(circle at 50%% 40%%,#ffffff 0,#eef1f4 60%%,#dde2e8 100%%)}
.rv-canvas:active{cursor:grabbing}
.rv-cap{font:13px/1.4 system-ui,sans-serif;color:#333;margin-top:6px}.rv-cap b{color:#111}
.rv-cap .rv-iou{float:right;font-variant-numeric:tabular-nums}.rv-links{font-size:12px;color:#666}
.rv-links a{color:#2a5db0;margin-right:.6em}
.rv-help{font:12px system-ui,sans-serif;color:#666}""" % (_CANVAS_PX, _CANVAS_PX)

_ERROR_HOOK = """(function(){var errs=[],root=document.documentElement;
function note(m){errs.push(String(m));root.dataset.viewerErrors=errs.join(" | ");}
window.addEventListener("error",function(e){note("uncaught: "+(e.message||e.type));});
window.addEventListener("unhandledrejection",function(e){note("unhandled rejection: "+e.reason);});
var ce=console.error;console.error=function(){note("console.error: "+Array.prototype.join.call(arguments," "));
return ce.apply(console,arguments);};})();"""


@dataclass
class ViewerItem:
    """One card: a predicted mesh, the image it came from and its caption.

    ``image`` is a dataset image ``(4, S, S)`` premultiplied RGBA or ``(3, S, S)`` RGB, float in
    [0, 1] (tensor or array), or an ``(S, S, 3|4)`` uint8 array; None shows no image. ``view`` is
    the input view: the 3D view starts from its camera (view 3 when None). ``links`` maps a label
    to a URL relative to the page (e.g. ``{"glb": "meshes/chair_x_view00.glb"}``).
    """

    verts: torch.Tensor | np.ndarray          # (V, 3)
    faces: torch.Tensor | np.ndarray          # (F, 3) int, 0-based
    colours: torch.Tensor | np.ndarray | None = None  # (V, 3) sRGB in [0, 1]; None -> grey
    image: torch.Tensor | np.ndarray | None = None
    category: str = ""
    object_id: str = ""
    view: int | None = None
    iou: float | None = None
    group: str = ""                           # items of one group share a grid under this heading
    links: Mapping[str, str] = field(default_factory=dict)


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _image_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """A dataset image (see ``ViewerItem``) -> (S, S, 3) uint8, RGBA composited on white."""
    x = _numpy(image)
    if x.dtype == np.uint8 and x.ndim == 3 and x.shape[2] in (3, 4):
        x = x.astype(np.float32).transpose(2, 0, 1) / 255.0
        if x.shape[0] == 4:  # straight (PNG) alpha
            x = np.concatenate([x[:3] * x[3:], x[3:]])
    x = x.astype(np.float32)
    if x.ndim != 3 or x.shape[0] not in (3, 4):
        raise ValueError(f"viewer image: expected (4|3, S, S) float or (S, S, 3|4) uint8, got {x.dtype} "
                         f"{tuple(x.shape)}")
    rgb = x[:3] + (1 - x[3:4]) if x.shape[0] == 4 else x
    return (rgb.transpose(1, 2, 0) * 255).round().clip(0, 255).astype(np.uint8)


def _png_data_uri(image: torch.Tensor | np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(_image_uint8(image)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _b64(arr: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(arr).tobytes()).decode("ascii")


def _display_mesh(item: ViewerItem) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    """Mesh and camera in the page's right-handed frame: (V, 3) float32 positions (x mirrored),
    (F, 3) uint32 faces (winding flipped with the mirror), (V, 3) uint8 sRGB colours, eye (3,)."""
    v = _numpy(item.verts).astype(np.float32)
    f = _numpy(item.faces).astype(np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"viewer item {item.category}/{item.object_id}: expected verts (V, 3) and faces (F, 3), "
                         f"got {tuple(v.shape)} and {tuple(f.shape)}")
    if not np.isfinite(v).all():
        raise ValueError(f"viewer item {item.category}/{item.object_id}: verts contain NaN or infinite values")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"viewer item {item.category}/{item.object_id}: face indices outside [0, {len(v)})")
    if item.colours is None:
        c = np.tile(np.asarray(DEFAULT_GREY, np.float32), (len(v), 1))
    else:
        c = _numpy(item.colours).astype(np.float32)
        if c.shape != v.shape:
            raise ValueError(f"viewer item {item.category}/{item.object_id}: colours must have shape "
                             f"{tuple(v.shape)}, got {tuple(c.shape)}")
    rgb = (np.nan_to_num(c, nan=0.0).clip(0, 1) * 255).round().astype(np.uint8)
    view = 3 if item.view is None else int(item.view)
    eye = cameras.eye_from_angles(cameras.view_azimuths(view))[0].double().numpy()
    radius = float(np.linalg.norm(v, axis=1).max()) if len(v) else 0.0
    fits = cameras.DISTANCE * math.tan(math.radians(cameras.VIEWING_ANGLE)) * 0.95
    eye = eye * max(1.0, radius / fits)  # back off for a mesh larger than the dataset's framing
    mirror = np.array([-1.0, 1.0, 1.0])
    return ((v * mirror).astype(np.float32), f[:, [0, 2, 1]].astype(np.uint32), rgb,
            (eye * mirror).round(6).tolist())


def viewer_items(predictions: Sequence[Prediction], faces: torch.Tensor,
                 colours: Sequence[torch.Tensor | None] | None = None, mesh_dir: str | os.PathLike | None = None,
                 page_dir: str | os.PathLike | None = None, group: str = "") -> list[ViewerItem]:
    """Cards for evaluation predictions (``recon.evaluate.Prediction``) sharing ``faces (F, 3)``.

    Args:
        colours: per prediction (V, 3) sRGB in [0, 1] or None (grey); None for all grey.
        mesh_dir: where ``save_prediction_meshes`` wrote them: each card links its .glb/.ply/.obj,
            relative to ``page_dir`` (the folder of the page; required with ``mesh_dir``).
    """
    if colours is not None and len(colours) != len(predictions):
        raise ValueError(f"viewer_items: {len(colours)} colour arrays for {len(predictions)} predictions")
    if mesh_dir is not None and page_dir is None:
        raise ValueError("viewer_items: page_dir is required with mesh_dir (links are relative to the page)")
    items = []
    for i, p in enumerate(predictions):
        links = {}
        if mesh_dir is not None:
            stem = prediction_mesh_name(p.name, p.object_id, p.view)
            links = _links(Path(mesh_dir), stem, Path(page_dir))  # type: ignore[arg-type]
        items.append(ViewerItem(p.verts, faces, None if colours is None else colours[i], p.image, p.name, p.object_id,
                                p.view, p.iou, group, links))
    return items


def _links(mesh_dir: Path, stem: str, page_dir: Path) -> dict[str, str]:
    out = {}
    for ext in ("glb", "ply", "obj"):
        path = mesh_dir / f"{stem}.{ext}"
        if path.is_file():
            out[ext] = Path(os.path.relpath(path, page_dir)).as_posix()
    return out


def viewer_items_from_meshes(mesh_dir: str | os.PathLike, page_dir: str | os.PathLike | None = None,
                             group: str = "") -> list[ViewerItem]:
    """Cards for the predictions that ``save_prediction_meshes`` wrote into ``mesh_dir`` (read from its
    ``predictions.json``, the .ply files and the input PNGs), linking the files relative to
    ``page_dir`` (default: no links). For pages built after the evaluation, e.g. the comparison."""
    import trimesh

    mesh_dir = Path(mesh_dir)
    manifest = mesh_dir / MANIFEST_NAME
    try:
        entries = json.loads(manifest.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{manifest}: cannot read the predictions manifest ({e})") from None
    items = []
    for e in entries:
        for name in e["files"].values():  # the manifest names files beside it, never a path elsewhere
            if not isinstance(name, str) or Path(name).name != name or name in (".", ".."):
                raise InputError(f"{manifest}: file name {name!r} is not a plain file name in {mesh_dir}")
        ply = mesh_dir / e["files"]["ply"]
        mesh = trimesh.load(ply, process=False, force="mesh")
        colours = np.asarray(mesh.visual.vertex_colors, np.float32)[:, :3] / 255.0
        image = np.asarray(Image.open(mesh_dir / e["files"]["input"]).convert("RGB")) if e["files"].get("input") \
            else None
        links = _links(mesh_dir, e["stem"], Path(page_dir)) if page_dir is not None else {}
        items.append(ViewerItem(np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int64), colours, image,
                                e["name"], e["object_id"], e["view"], e.get("iou"), group, links))
    return items


def _card(item: ViewerItem, index: int, esc: Any) -> str:
    image = (f"<img class='rv-input' src='{_png_data_uri(item.image)}' alt='input image'>"
             if item.image is not None else "")
    iou = f"<span class='rv-iou'>IoU {fmt(item.iou, 'iou')}</span>" if item.iou is not None else ""
    view = f" &middot; view {int(item.view)}" if item.view is not None else ""
    links = "".join(f"<a href='{esc(url)}' download>{esc(label)}</a>" for label, url in item.links.items())
    return (f"<div class='rv-card' data-mesh='{index}'><div class='rv-pair'>{image}"
            f"<canvas class='rv-canvas' width='{_CANVAS_PX}' height='{_CANVAS_PX}' "
            f"title='drag: orbit, right-drag: pan, click then wheel: zoom, double-click: reset'></canvas></div>"
            f"<div class='rv-cap'>{iou}<b>{esc(item.category)}</b> &middot; {esc(item.object_id)}{view}</div>"
            + (f"<div class='rv-links'>download: {links}</div>" if links else "") + "</div>")


def viewer_fragment(items: Sequence[ViewerItem]) -> str:
    """The viewer as an HTML fragment (style, cards, inlined scripts) to put in a page's ``<body>``,
    at most once per page. Cards are grouped by ``item.group`` in order of first appearance."""
    esc = html.escape
    face_ids: dict[bytes, int] = {}
    meshes = []
    for item in items:
        v, f, c, eye = _display_mesh(item)
        key = f.tobytes()
        face_ids.setdefault(key, len(face_ids))
        meshes.append({"positions": _b64(v), "colours": _b64(c), "faces": face_ids[key], "eye": eye,
                       "fov": 2 * cameras.VIEWING_ANGLE})
    table = {"faces": [base64.b64encode(k).decode("ascii") for k in face_ids], "meshes": meshes}
    groups: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(item.group, []).append(i)
    parts = [f"<script>{_ERROR_HOOK}</script><style>{_CSS}</style><div class='rv-viewer'>",
             "<p class='rv-help'>Left: the input image. Right: the predicted mesh, seen first from the input view. "
             "Drag to orbit, right-drag to pan, click then scroll to zoom, double-click to reset.</p>"]
    for name, indices in groups.items():
        if name:
            parts.append(f"<h3>{esc(name)}</h3>")
        parts.append("<div class='rv-grid'>" + "".join(_card(items[i], i, esc) for i in indices) + "</div>")
    data = json.dumps(table, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    parts += [f"<script type='application/json' id='rv-data'>{data}</script>",
              f"<script>{_VENDOR_JS.read_text(encoding='utf-8')}</script>",
              f"<script>{_VIEWER_JS.read_text(encoding='utf-8')}</script></div>"]
    return "".join(parts)


def viewer_page(items: Sequence[ViewerItem], title: str, intro_html: str = "") -> str:
    """A complete self-contained HTML page: ``title``, optional ``intro_html`` (trusted HTML), the cards."""
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<meta name='viewport' content='width=device-width,initial-scale=1'><title>{html.escape(title)}</title>"
            "<style>body{font-family:system-ui,sans-serif;max-width:1400px;margin:1.5em auto;padding:0 1em;"
            "color:#222;background:#f6f7f9}h1{font-size:1.4em}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{intro_html}{viewer_fragment(items)}</body></html>")


def write_viewer_page(items: Sequence[ViewerItem], path: str | os.PathLike, title: str,
                      intro_html: str = "") -> Path:
    """Write ``viewer_page(items, title, intro_html)`` to ``path`` atomically; returns ``Path(path)``."""
    atomic_write_bytes(path, viewer_page(items, title, intro_html).encode("utf-8"))
    return Path(path)
