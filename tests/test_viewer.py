"""The interactive 3D viewer page (recon.report.viewer): self-contained HTML, opened in headless
Chromium from a file:// URL, where it must draw every mesh (vertex colours, from the input view's
camera) without console errors, and orbit when dragged. The Chromium tests skip where the Debian
package ``chromium`` is missing (.ci/run installs it when it can)."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from recon.data.raster import render_views
from recon.mesh import load_template
from recon.report.mesh_export import vertex_normals
from recon.report.viewer import ViewerItem, _display_mesh, viewer_items, viewer_items_from_meshes, write_viewer_page

WINDOW = (900, 700)
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (Debian package "
                                    "`chromium`: apt-get install -y chromium; .ci/run installs it when it can)")

# Records the first canvas's place, its alpha mask, then drags it and counts the pixels that changed.
_PROBE = """<script>(function(){var root=document.documentElement,c=document.querySelector('canvas.rv-canvas');
var r=c.getBoundingClientRect(),ctx=c.getContext('2d');
function snap(){return ctx.getImageData(0,0,c.width,c.height).data;}
var a=snap(),mask='';for(var i=3;i<a.length;i+=4)mask+=a[i]>0?'1':'0';
root.dataset.rect=[r.left,r.top,r.width,r.height,c.width,c.height].join(',');root.dataset.mask=mask;
var x=r.left+r.width/2,y=r.top+r.height/2;
function ev(t,dx){c.dispatchEvent(new PointerEvent(t,{pointerId:1,pointerType:'mouse',button:0,
buttons:t==='pointerup'?0:1,clientX:x+dx,clientY:y,bubbles:true,isPrimary:true}));}
ev('pointerdown',0);ev('pointermove',30);ev('pointermove',60);ev('pointerup',60);
var b=snap(),d=0;for(var j=0;j<a.length;j+=4)if(a[j]!==b[j]||a[j+3]!==b[j+3])d++;root.dataset.dragChanged=d;})();
</script></body>"""


def _asymmetric_mesh() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A box with a small cube at +x and a ball on top: mirroring it changes its silhouette.
    Colours: red where x > 0, blue elsewhere. Returns verts (V, 3), faces (F, 3), colours (V, 3)."""
    body = trimesh.creation.box(extents=(0.6, 0.3, 0.4))
    arm = trimesh.creation.box(extents=(0.15, 0.15, 0.15))
    arm.apply_translation((0.42, 0.1, 0.0))
    ball = trimesh.creation.icosphere(subdivisions=2, radius=0.12)
    ball.apply_translation((0.0, 0.25, -0.1))
    m = trimesh.util.concatenate([body, arm, ball])
    v = torch.tensor(m.vertices, dtype=torch.float32)
    colours = torch.where(v[:, :1] > 0, torch.tensor([0.9, 0.12, 0.1]), torch.tensor([0.1, 0.2, 0.9]))
    return v, torch.tensor(m.faces, dtype=torch.int64), colours


def _dataset_image(verts: torch.Tensor, faces: torch.Tensor, view: int, size: int = 64) -> torch.Tensor:
    return torch.tensor(render_views(verts, faces, [view], image_size=size)[0].astype(np.float32) / 255)


def _items() -> list[ViewerItem]:
    v, f, c = _asymmetric_mesh()
    tv, tf = load_template()
    tv = tv * torch.tensor([0.45, 0.3, 0.35])
    return [ViewerItem(v, f, c, _dataset_image(v, f, 0), "chair", "asymmetric", 0, 0.71, "encoder A"),
            ViewerItem(tv, tf, None, _dataset_image(tv, tf, 5), "table", "grey <b>", 5, None, "encoder A"),
            ViewerItem(tv, tf, torch.rand(tv.shape), None, "lamp", "noisy", None, 0.25, "encoder B")]


def _chromium(url: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader",
           "--enable-unsafe-swiftshader", "--disable-quic", "--no-first-run", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--force-device-scale-factor=1",
           f"--user-data-dir={tmp / 'chromium-profile'}", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=5000", f"--window-size={WINDOW[0]},{WINDOW[1]}", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, check=False)


def _attrs(dom: str) -> dict[str, str]:
    """The data-* attributes of the <html> element of a dumped DOM."""
    tag = re.search(r"<html[^>]*>", dom)
    assert tag, f"no <html> element in the dumped DOM: {dom[:300]!r}"
    return {k: html.unescape(v) for k, v in re.findall(r'data-([a-z-]+)="([^"]*)"', tag.group(0))}


def _console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


# ---------------------------------------------------------------- the page itself (no browser)

def test_page_is_self_contained(tmp_path):
    page = write_viewer_page(_items(), tmp_path / "index.html", "Predictions <test>")
    text = page.read_text(encoding="utf-8")
    refs = re.findall(r"""\b(?:src|href)\s*=\s*['"]([^'"]*)""", text)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs), refs  # no file, CDN or network
    assert "<link" not in text and "@import" not in text and "type='module'" not in text
    assert text.count("<script") == text.count("</script>") == 4  # error hook, mesh table, three.js, viewer
    assert "<title>Predictions &lt;test&gt;</title>" in text and "grey &lt;b&gt;" in text
    assert text.count("data-mesh=") == 3 and text.count("<h3>") == 2  # two groups
    assert not list(tmp_path.glob("*.tmp"))


def test_display_frame_is_the_datasets_mirror_with_outward_faces():
    v, f = load_template()
    v = v * torch.tensor([0.5, 0.3, 0.4])
    dv, df, rgb, eye = _display_mesh(ViewerItem(v, f, None, view=4))
    np.testing.assert_allclose(dv, v.numpy() * [-1, 1, 1], atol=1e-7)
    # flipping the winding with the mirror keeps the normals pointing out of the surface
    assert ((vertex_normals(dv, df.astype(np.int64)) * dv).sum(1) > 0).all()
    assert rgb.shape == (642, 3) and rgb.dtype == np.uint8
    np.testing.assert_allclose(np.linalg.norm(eye), 2.732, atol=1e-6)


def test_bad_items_are_refused_with_the_item_named():
    v, f = load_template()
    with pytest.raises(ValueError, match=r"chair/x: colours must have shape \(642, 3\)"):
        _display_mesh(ViewerItem(v, f, torch.rand(5, 3), category="chair", object_id="x"))
    with pytest.raises(ValueError, match="face indices outside"):
        _display_mesh(ViewerItem(v, f + 1, category="chair", object_id="x"))
    with pytest.raises(ValueError, match=r"viewer image: expected"):
        write_viewer_page([ViewerItem(v, f, image=torch.rand(2, 8, 8))], "/dev/null/x.html", "t")


def test_items_from_saved_meshes_round_trip(tmp_path):
    from recon.evaluate import Prediction
    from recon.report import save_prediction_meshes

    v, f, c = _asymmetric_mesh()
    image = _dataset_image(v, f, 2)
    preds = [Prediction("03001627", "chair", "a1", 2, image, v, torch.zeros(32, 32, 32, dtype=torch.bool), 0.6)]
    save_prediction_meshes(preds, f, tmp_path / "eval" / "meshes", colours=[c])
    direct = viewer_items(preds, f, [c], mesh_dir=tmp_path / "eval" / "meshes", page_dir=tmp_path / "eval")
    (loaded,) = viewer_items_from_meshes(tmp_path / "eval" / "meshes", page_dir=tmp_path, group="A")
    assert direct[0].links == {"glb": "meshes/chair_a1_view02.glb", "ply": "meshes/chair_a1_view02.ply",
                               "obj": "meshes/chair_a1_view02.obj"}
    assert loaded.links["glb"] == "eval/meshes/chair_a1_view02.glb"
    assert (loaded.category, loaded.object_id, loaded.view, loaded.iou, loaded.group) == ("chair", "a1", 2, 0.6, "A")
    np.testing.assert_allclose(loaded.verts, v.numpy(), atol=1e-6)
    np.testing.assert_array_equal(loaded.faces, f.numpy())
    np.testing.assert_allclose(loaded.colours, np.round(c.numpy() * 255) / 255, atol=1e-6)
    a, b = _display_mesh(direct[0]), _display_mesh(loaded)
    np.testing.assert_array_equal(a[2], b[2])  # same colour bytes either way
    with pytest.raises(ValueError, match="predictions.json: cannot read the predictions manifest"):
        viewer_items_from_meshes(tmp_path)


# ---------------------------------------------------------------- in headless Chromium

@needs_chromium
def test_chromium_draws_every_mesh_without_errors(tmp_path):
    items = _items()
    page = write_viewer_page(items, tmp_path / "index.html", "Viewer test")
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE), encoding="utf-8")

    run = _chromium(probe.as_uri(), tmp_path, "--dump-dom")
    attrs = _attrs(run.stdout)
    assert attrs.get("viewer-status") == "loaded:3", (attrs.get("viewer-status"), run.stderr[-3000:])
    assert "viewer-errors" not in attrs, attrs["viewer-errors"]
    assert not [line for line in _console_lines(run.stderr) if "Uncaught" in line or "rror:" in line]
    coverage = [float(x) for x in attrs["viewer-coverage"].split(",")]
    assert len(coverage) == 3 and all(0.03 < x < 0.8 for x in coverage), coverage
    assert int(attrs["drag-changed"]) > 1000  # dragging orbits the camera and redraws

    # The first view starts at the input view's camera: its silhouette is the dataset renderer's.
    left, top, w, h, cw, ch = (round(float(x)) for x in attrs["rect"].split(","))
    assert (w, h) == (cw, ch) == (240, 240)
    mask = np.array([ch == "1" for ch in attrs["mask"]]).reshape(240, 240)
    v, f, _ = _asymmetric_mesh()
    ref = render_views(v, f, [0], image_size=240, supersample=1)[0, 3] > 0

    def iou(a, b):
        return (a & b).sum() / (a | b).sum()

    assert iou(mask, ref) > 0.95, iou(mask, ref)
    assert iou(mask[:, ::-1], ref) < 0.85  # the check can tell a mirrored view apart

    shot = tmp_path / "shot.png"
    run = _chromium(page.as_uri(), tmp_path, f"--screenshot={shot}")
    assert shot.is_file(), run.stderr[-3000:]
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape == (WINDOW[1], WINDOW[0], 3)
    view = img[top:top + h, left:left + w]
    r, g, b = view[..., 0], view[..., 1], view[..., 2]
    red = ((r > 120) & (r > g + 50) & (r > b + 50)).mean()
    blue = ((b > 120) & (b > r + 50) & (b > g + 30)).mean()
    assert red > 0.01 and blue > 0.01, (red, blue)  # vertex colours, shaded, on screen
    assert len(np.unique(view.reshape(-1, 3), axis=0)) > 200  # shading, not a flat fill


@needs_chromium
def test_chromium_without_webgl_reports_the_failure(tmp_path):
    page = write_viewer_page(_items()[:1], tmp_path / "index.html", "No WebGL")
    attrs = _attrs(_chromium(page.as_uri(), tmp_path, "--disable-3d-apis", "--dump-dom").stdout)
    assert attrs.get("viewer-status", "").startswith("error:WebGL unavailable"), attrs
    assert "Uncaught Error: WebGL unavailable" in attrs.get("viewer-errors", "")
