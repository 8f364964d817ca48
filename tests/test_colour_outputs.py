"""Coloured runs' outputs: mesh renders and the Fig. 2 figure in colour, pipelines.predict writing the
predicted vertex colours (.ply/.glb, turntable), and the comparison tables' colour columns."""

from __future__ import annotations

import io
import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from recon import cameras
from recon.data.raster import render_views
from recon.models import Reconstructor
from recon.report.figures import COLOUR_AMBIENT, figure_predictions, shading_from_views, render_mesh_rgb

SPREAD = 40  # max - min over RGB (0-255) above which a pixel counts as coloured


def _mesh() -> tuple[torch.Tensor, torch.Tensor]:
    """The template sphere stretched into an ellipsoid: (642, 3) verts, (1280, 3) faces."""
    model = Reconstructor()
    return model.decoder.template_mesh().detach() * torch.tensor([1.0, 1.6, 0.8]), model.faces


def _rainbow(verts: torch.Tensor) -> torch.Tensor:
    """(V, 3) colours varying with position (each channel one axis, in [0, 1])."""
    lo, hi = verts.min(0).values, verts.max(0).values
    return (verts - lo) / (hi - lo)


def _coloured(pixels: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> bool: the pixel's channels differ by more than ``SPREAD``."""
    p = pixels.astype(np.int16)
    return p.max(-1) - p.min(-1) > SPREAD


def _on_white(rgba_uint8: np.ndarray) -> np.ndarray:
    """render_views' (N, 4, S, S) premultiplied uint8 -> (N, S, S, 3) float on white (0-255)."""
    x = rgba_uint8.astype(np.float64) / 255
    return ((x[:, :3] + 1 - x[:, 3:4]) * 255).transpose(0, 2, 3, 1)


# ---------------------------------------------------------------------------------------------- renders


def test_white_vertex_colours_reproduce_the_dataset_renderers_lambert_shading() -> None:
    """The coloured path (per-face shade x interpolated colours, DIB-R raster, 3x3 supersampling) draws
    the same pixels as the dataset renderer shading a white mesh with the same ambient term."""
    verts, faces = _mesh()
    coloured = render_mesh_rgb(verts, faces, colours=torch.ones_like(verts)).astype(np.float64)
    reference = _on_white(render_views(verts, faces, [3, 9, 15], image_size=128, colour=(1, 1, 1),
                                       ambient=COLOUR_AMBIENT))
    assert (coloured < 250).sum() > 5000  # the mesh is there
    assert np.abs(coloured - reference).max() <= 2.0
    shade = shading_from_views(verts, faces, cameras.view_azimuths(torch.tensor([3, 9])))
    assert shade.shape == (2, 1280) and float(shade.min()) >= COLOUR_AMBIENT - 1e-6 and float(shade.max()) <= 1 + 1e-6


def test_coloured_render_shows_the_vertex_colours() -> None:
    verts, faces = _mesh()
    red = torch.zeros_like(verts)
    red[:, 0] = 1.0
    img = render_mesh_rgb(verts, faces, views=[3], colours=red)[0].astype(np.int16)
    grey = render_mesh_rgb(verts, faces, views=[3])[0]
    covered = (render_views(verts, faces, [3], image_size=128)[0, 3] == 255)  # fully covered pixels
    assert covered.sum() > 1000
    assert (img[covered, 1] == 0).all() and (img[covered, 2] == 0).all()
    assert img[covered, 0].min() >= round(255 * COLOUR_AMBIENT) - 1
    # the same silhouette as the grey render, and the grey render has no colour at all
    assert ((img < 255).any(-1) == (grey < 255).any(-1)).mean() > 0.995
    assert not _coloured(grey).any()
    # colours scale the render linearly (inside the mesh)
    half = render_mesh_rgb(verts, faces, views=[3], colours=red * 0.5)[0].astype(np.int16)
    assert np.abs(half[covered, 0] - img[covered, 0] / 2).max() <= 1.0
    with pytest.raises(ValueError, match="colours must have shape"):
        render_mesh_rgb(verts, faces, colours=red[:10])


def test_one_thread_restores_the_thread_count_even_after_an_error() -> None:
    from recon.runtime import one_thread

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="inside"):
            with one_thread():
                assert torch.get_num_threads() == 1
                raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
        verts, faces = _mesh()
        render_mesh_rgb(verts, faces, views=[0], image_size=32, colours=torch.ones_like(verts))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def _predictions(colours: bool):
    from recon.evaluate import Prediction

    verts, _ = _mesh()
    image = torch.zeros(4, 64, 64)
    image[:3, 16:48, 20:44] = torch.tensor([0.8, 0.3, 0.1])[:, None, None]  # an orange block (premultiplied)
    image[3, 16:48, 20:44] = 1.0
    voxels = torch.zeros(32, 32, 32, dtype=torch.bool)
    voxels[8:24, 4:28, 10:22] = True
    out = []
    for i, name in enumerate(["chair", "table"]):
        v = verts * (1.0 - 0.2 * i)
        out.append(Prediction("03001627", name, f"obj{i}", 0, image, v, voxels, 0.5 + 0.1 * i,
                              colours=_rainbow(v) if colours else None))
    return out


def _prediction_band(path: Path) -> np.ndarray:
    """The middle of the figure (columns 2-4: the three prediction panels; not the input image, first,
    nor the GT voxels, last) as (H, W', 3) uint8."""
    img = np.asarray(Image.open(path).convert("RGB"))
    w = img.shape[1]
    return img[:, int(0.25 * w):int(0.75 * w)]


def test_figure_predictions_in_colour_for_coloured_predictions_grey_otherwise(tmp_path: Path) -> None:
    faces = Reconstructor().faces
    figure_predictions(_predictions(colours=True), faces, tmp_path / "colour.png", title="coloured run")
    figure_predictions(_predictions(colours=False), faces, tmp_path / "grey.png", title="silhouette run")
    colour_band, grey_band = _prediction_band(tmp_path / "colour.png"), _prediction_band(tmp_path / "grey.png")
    assert _coloured(colour_band).sum() > 3000  # six mesh panels in their rainbow colours
    assert not _coloured(grey_band).any()
    # the input image (orange) is drawn in both figures
    for name in ("colour.png", "grey.png"):
        full = np.asarray(Image.open(tmp_path / name).convert("RGB"))
        assert _coloured(full[:, :int(0.2 * full.shape[1])]).sum() > 500


# ---------------------------------------------------------------------------------------------- predict


def _checkpoint(directory: Path, colour: str | None) -> Path:
    """An untrained checkpoint, coloured (``colour`` head) or not; its training data is absent."""
    from recon.checkpoint import save_checkpoint
    from recon.config import TrainConfig

    torch.manual_seed(1)
    model = Reconstructor("resnet", colour=colour)
    if colour == "latent":  # an untrained head gives gains of about 1 everywhere: make the vertices differ
        torch.nn.init.normal_(model.colour_head.fc2.bias, std=2.0)
    config = asdict(TrainConfig(encoder="resnet", data=str(directory / "absent.h5"), colour=colour is not None,
                                colour_head=colour or "latent"))
    path = directory / f"{colour or 'silhouette'}.pt"
    save_checkpoint({"version": 1, "model": model.state_dict(), "step": 0, "config": config}, path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ckpts")
    return {name: _checkpoint(d, None if name == "silhouette" else name) for name in ("latent", "sample", "silhouette")}


@pytest.fixture(scope="module")
def cutout(tmp_path_factory) -> Path:
    """A square PNG with transparency (used as is): a two-coloured block, red above and blue below."""
    rgba = np.zeros((128, 128, 4), np.uint8)
    rgba[30:64, 40:90] = (220, 40, 30, 255)
    rgba[64:100, 40:90] = (40, 60, 210, 255)
    path = tmp_path_factory.mktemp("img") / "block.png"
    Image.fromarray(rgba, "RGBA").save(path)
    return path


def _expected_colours(checkpoint: Path, image_path: Path, view: int | None) -> torch.Tensor:
    """What the checkpoint's model predicts for the image, computed here from its parts."""
    from recon.data.image_io import EMBEDDED_FILLS, prepare_image
    from recon.runs import load_model

    model, _ = load_model(checkpoint, torch.device("cpu"))
    model.eval()
    image = prepare_image(image_path, 64, fills=EMBEDDED_FILLS).image[None]
    az = None if view is None else cameras.view_azimuths(view)
    with torch.no_grad():
        return model(image, azimuth=az, with_colours=True)[1][0]


def _ply_colours(path: Path) -> np.ndarray:
    import trimesh

    mesh = trimesh.load(path, process=False)
    assert mesh.vertices.shape == (642, 3) and mesh.faces.shape == (1280, 3)
    return np.asarray(mesh.visual.vertex_colors)[:, :3].astype(np.float64) / 255


def _turntable_mesh_tiles(path: Path) -> np.ndarray:
    strip = np.asarray(Image.open(path).convert("RGB"))
    assert strip.shape == (128, 128 * 10, 3)
    return strip[:, 2 * 128:]  # after the original and the model input


def test_predict_writes_the_predicted_vertex_colours_of_a_latent_head(checkpoints, cutout, tmp_path: Path,
                                                                      capsys) -> None:
    import trimesh

    from pipelines import predict
    from recon.mesh import load_obj
    out = tmp_path / "out"
    assert predict.main([str(cutout), "--checkpoint", str(checkpoints["latent"]), "--out", str(out),
                         "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "colour head latent" in printed and f"{out / 'block.ply'}, {out / 'block.glb'}" in printed
    assert "input view" not in printed  # the latent head needs no camera
    assert sorted(p.name for p in out.iterdir()) == ["block.glb", "block.obj", "block.ply", "block_turntable.png"]
    want = _expected_colours(checkpoints["latent"], cutout, None).numpy()
    assert want.std(0).max() > 0.01  # per-vertex colours, not one flat colour
    assert np.abs(_ply_colours(out / "block.ply") - want).max() <= 0.5 / 255 + 1e-6
    verts, _ = load_obj(out / "block.obj")
    glb = trimesh.load(out / "block.glb", force="mesh", process=False)
    assert np.allclose(np.asarray(glb.vertices), verts.numpy(), atol=1e-6)
    # the .glb's COLOR_0 holds the .ply's sRGB bytes, and trimesh hands them out as vertex colours
    assert np.abs(glb.visual.vertex_colors[:, :3] / 255.0 - want).max() <= 0.5 / 255 + 1e-6
    assert _coloured(_turntable_mesh_tiles(out / "block_turntable.png")).sum() > 500


def test_predict_sample_head_uses_the_given_or_estimated_input_view(checkpoints, cutout, tmp_path: Path,
                                                                    capsys) -> None:
    from pipelines import predict

    out = tmp_path / "given"
    assert predict.main([str(cutout), "--checkpoint", str(checkpoints["sample"]), "--out", str(out),
                         "--device", "cpu", "--view", "5"]) == 0
    assert "input view 5 (given)" in capsys.readouterr().out
    want = _expected_colours(checkpoints["sample"], cutout, 5).numpy()
    assert np.abs(_ply_colours(out / "block.ply") - want).max() <= 0.5 / 255 + 1e-6
    # sampled from the red-over-blue image: both colours are on the mesh
    assert (want[:, 0] > want[:, 2] + 0.3).any() and (want[:, 2] > want[:, 0] + 0.3).any()
    out = tmp_path / "auto"
    assert predict.main([str(cutout), "--checkpoint", str(checkpoints["sample"]), "--out", str(out),
                         "--device", "cpu"]) == 0
    match = re.search(r"input view (\d+) \(best silhouette match, IoU (\d\.\d\d)\)", capsys.readouterr().out)
    assert match and 0 <= int(match.group(1)) < 24 and float(match.group(2)) > 0
    want = _expected_colours(checkpoints["sample"], cutout, int(match.group(1))).numpy()
    assert np.abs(_ply_colours(out / "block.ply") - want).max() <= 0.5 / 255 + 1e-6


def test_estimate_input_view_finds_the_camera_of_a_render() -> None:
    from recon.workflows.predict import estimate_input_view

    verts, faces = _mesh()
    verts = verts * torch.tensor([0.4, 0.25, 0.15]) + torch.tensor([0.15, 0.0, 0.05])  # off-centre: no symmetry
    for view in (0, 7, 17):
        mask = torch.from_numpy(render_views(verts, faces, [view], image_size=64, supersample=1)[0, 3] > 127)
        assert estimate_input_view(verts, faces, mask) == (view, 1.0)


def test_predict_silhouette_checkpoint_is_unchanged(checkpoints, cutout, tmp_path: Path, capsys) -> None:
    from pipelines import predict

    out = tmp_path / "sil"
    assert predict.main([str(cutout), "--checkpoint", str(checkpoints["silhouette"]), "--out", str(out),
                         "--device", "cpu", "--view", "3"]) == 0
    printed = capsys.readouterr().out
    assert "--view 3 is not used" in printed and "colour head" not in printed
    assert sorted(p.name for p in out.iterdir()) == ["block.obj", "block_turntable.png"]
    assert not _coloured(_turntable_mesh_tiles(out / "block_turntable.png")).any()


@pytest.mark.parametrize("value, message", [("24", "--view 24: expected a training view index in [0, 24)"),
                                            ("left", "argument --view: expected auto or a view index 0-23")])
def test_predict_bad_view_is_one_line_before_any_work(value, message, checkpoints, cutout, tmp_path: Path,
                                                      capsys) -> None:
    from pipelines import predict

    out = tmp_path / "o"
    with pytest.raises(SystemExit) as exc:
        predict.main([str(cutout), "--checkpoint", str(checkpoints["sample"]), "--out", str(out), "--view", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- tables


def _row(iou: float, **colour: float) -> dict:
    per = {c: {"iou": iou, "loss": 0.3, "n": 2, **{k[5:]: v for k, v in colour.items()}} for c in ("chair", "table")}
    return {"mean_iou": iou, "mean_loss": 0.3, "per_category": per, **colour}


def _comparison(coloured: bool) -> dict:
    encoders = {}
    for i, name in enumerate(["resnet", "attention"]):
        colour = {"mean_psnr": 13.25 + i, "mean_l1": 0.0712 + 0.01 * i} if coloured else {}
        e = {**_row(0.4 + 0.01 * i, **colour), "parameters": {"encoder": 10 + i, "decoder": 5, "total": 15 + i},
             "steps": 3, "train_time_s": 1.5, "figure": None, "run": "trained"}
        if coloured:
            base = _row(0.4 + 0.01 * i, mean_psnr=12.5 + i, mean_l1=0.0801 + i / 100)
            e["colour_baselines"] = {"mean_colour": {**base, "mean_loss": None}}
        encoders[name] = e
    return {"data": "/d/tiny.h5", "split": "test", "views": [0, 12], "max_per_category": 1,
            "categories": ["chair", "table"],
            "settings": {"iterations": 3, "seed": 0, "batch_size": 2, "lr": 1e-4, "backend": "softras",
                         "checkpoint": "best"},
            "device": "cpu", "protocol": "softras", "encoders": encoders,
            "baselines": {"template": {**_row(0.1), "mean_loss": None}}, "reference_notes": {}, "published": {},
            "curves": "curves.png", "commands": {"compare": "python -m pipelines.compare", "train": {}, "eval": {}}}


def _console(table) -> str:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=400, color_system=None)
    console.print(table)
    return console.file.getvalue()


def test_comparison_tables_gain_colour_columns_only_for_coloured_runs(tmp_path: Path) -> None:
    from recon.report import comparison_table, html_report, markdown_table

    plain, coloured = _comparison(False), _comparison(True)
    for text in (markdown_table(plain), _console(comparison_table(plain)), html_report(plain, tmp_path)):
        assert "PSNR" not in text and "mean colour" not in text
    md = markdown_table(coloured)
    header = next(line for line in md.splitlines() if line.startswith("| method | parameters"))
    assert header.endswith("| mean IoU | PSNR (dB) | PSNR mean colour | L1 | L1 mean colour |")
    assert "| resnet | 10 | 15 | 3 | 1.5 | 0.3000 | 0.4000 | 13.25 | 12.50 | 0.0712 | 0.0801 |" in md
    assert "| attention | 11 | 16 | 3 | 1.5 | 0.3000 | 0.4100 | 14.25 | 13.50 | 0.0812 | 0.0901 |" in md
    assert "| template sphere | - | - | - | - | - | 0.1000 | - | - | - | - |" in md
    console = _console(comparison_table(coloured))
    assert "PSNR mean colour" in console and "14.25" in console and "13.50" in console
    page = html_report(coloured, tmp_path)
    cells = dict(re.findall(r"<td class='num' data-key='([^']+)'>([^<]*)</td>", page))
    assert cells["encoders.resnet.mean_psnr"] == "13.25" and cells["encoders.attention.mean_l1"] == "0.0812"
    assert cells["encoders.attention.colour_baselines.mean_colour.mean_psnr"] == "13.50"
    assert cells["encoders.resnet.colour_baselines.mean_colour.mean_l1"] == "0.0801"
    assert not any(k.startswith("baselines.") and "psnr" in k for k in cells)  # no colour for reference rows
    assert "predicted colours" in page


def test_coloured_comparison_end_to_end(tiny_dataset: str, tmp_path: Path) -> None:
    """pipelines.compare --colour: table.json carries the colour scores, table.md and report.html show them
    (each cell the value its data-key names), and the Fig. 2 prediction panels are in colour."""
    from pipelines import compare

    out = tmp_path / "cmp"
    record = compare.main(["--data", tiny_dataset, "--out", str(out), "--iterations", "2", "--encoders", "resnet",
                           "--views", "2", "--max-per-category", "1", "--batch-size", "2", "--device", "cpu",
                           "--figures", "1", "--log-every", "1", "--val-objects", "1", "--val-views", "1",
                           "--no-tensorboard", "--no-full-metrics", "--colour"])
    data = json.loads((out / "table.json").read_text())
    entry = data["encoders"]["resnet"]
    eval_json = json.loads(Path(entry["eval_json"]).read_text())
    assert entry["mean_psnr"] == pytest.approx(eval_json["mean_psnr"]) == pytest.approx(record["encoders"]["resnet"]
                                                                                       ["mean_psnr"])
    assert entry["colour_baselines"] == eval_json["colour_baselines"]
    assert f"| {entry['mean_psnr']:.2f} | {entry['colour_baselines']['mean_colour']['mean_psnr']:.2f} |" in \
        (out / "table.md").read_text()
    cells = dict(re.findall(r"<td class='num' data-key='([^']+)'>([^<]*)</td>", (out / "report.html").read_text()))
    for key in ("encoders.resnet.mean_psnr", "encoders.resnet.mean_l1",
                "encoders.resnet.colour_baselines.mean_colour.mean_psnr",
                "encoders.resnet.colour_baselines.mean_colour.mean_l1"):
        node = data
        for part in key.split("."):
            node = node[part]
        shown = cells[key]
        assert abs(float(shown) - node) <= 0.5 * 10 ** -len(shown.split(".")[1]) + 1e-12, key
    assert _coloured(_prediction_band(out / "resnet_predictions.png")).sum() > 1000
