"""Coloured reconstruction: colour heads, the colour objective, colour scores, and --colour end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from recon import cameras
from recon.colour import (BASELINE_PREFIX, COLOUR_METRICS, ColourObjective, colour_l1, colour_record, colour_scores,
                          novel_offsets, object_colour_scores, object_mean_colour)
from recon.config import EvalConfig, TrainConfig
from recon.workflows.eval import evaluate_run
from recon.models import Reconstructor
from recon.models.colour_heads import ImageSampleColourHead, image_mean_colour, sample_image
from recon.render import get_renderer
from recon.runs import load_model
from recon.training import SilhouetteObjective, train


def _premultiplied(rgb: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """(N, 3, S, S) colours and (N, S, S) coverage -> (N, 4, S, S) dataset-style RGBA."""
    return torch.cat([rgb * alpha[:, None], alpha[:, None]], 1)


def test_colour_l1_is_the_coverage_weighted_error_of_unpremultiplied_colours() -> None:
    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(2, 3, 8, 8, generator=g)
    true = torch.rand(2, 3, 8, 8, generator=g)
    alpha = torch.rand(2, 8, 8, generator=g) * (torch.rand(2, 8, 8, generator=g) > 0.5)
    target = _premultiplied(true, alpha)
    expected = (alpha[:, None] * (rgb - true).abs()).sum() / (3 * alpha.sum())
    assert float(colour_l1(rgb, target)) == pytest.approx(float(expected), rel=1e-5)
    assert float(colour_l1(true, target)) == pytest.approx(0.0, abs=1e-6)
    rgb_outside = torch.where(alpha[:, None] > 0, true, torch.rand(2, 3, 8, 8, generator=g))
    assert float(colour_l1(rgb_outside, target)) == pytest.approx(0.0, abs=1e-6)  # outside the mask: free
    with pytest.raises(ValueError, match="colour_l1"):
        colour_l1(rgb, rgb)


def test_colour_scores_over_the_union_of_masks() -> None:
    s = 4
    target = torch.zeros(1, 4, s, s)
    target[0, :3, :2] = 0.5  # GT covers the top two rows, colour 0.5
    target[0, 3, :2] = 1.0
    render = torch.zeros(1, 4, s, s)
    render[0, :3, 1:3] = 0.7  # the render covers rows 1-2 with colour 0.7 (rows 3: nothing, colour ignored)
    render[0, 3, 1:3] = 1.0
    render[0, :3, 3] = 0.9  # colour without coverage: premultiplied to 0
    out = colour_scores(render, target)
    # union = rows 0..2 (12 pixels x 3 channels): errors 0.5 (row 0), 0.2 (row 1), 0.7 (row 2)
    mse = (0.5 ** 2 + 0.2 ** 2 + 0.7 ** 2) / 3
    assert float(out["psnr"][0]) == pytest.approx(10 * math.log10(1 / mse), rel=1e-6)
    assert float(out["l1"][0]) == pytest.approx((0.5 + 0.2 + 0.7) / 3, rel=1e-6)
    assert float(out["psnr_overlap"][0]) == pytest.approx(10 * math.log10(1 / 0.2 ** 2), rel=1e-6)  # row 1 only
    same = colour_scores(target, target)
    assert float(same["psnr"][0]) == pytest.approx(100.0) and float(same["l1"][0]) == 0.0
    empty = colour_scores(torch.zeros(1, 4, s, s), torch.zeros(1, 4, s, s))
    assert all(math.isnan(float(v[0])) for v in empty.values())


def test_mean_colours_unpremultiply() -> None:
    alpha = torch.zeros(2, 6, 6)
    alpha[0, :3] = 1.0
    alpha[1, :, :2] = 0.5
    rgb = torch.tensor([0.2, 0.4, 0.6])[None, :, None, None].expand(2, 3, 6, 6)
    images = _premultiplied(rgb, alpha)
    torch.testing.assert_close(image_mean_colour(images), torch.tensor([[0.2, 0.4, 0.6]] * 2))
    torch.testing.assert_close(object_mean_colour(images), torch.tensor([0.2, 0.4, 0.6]))


def test_novel_offsets_spread_over_the_evaluated_views() -> None:
    assert novel_offsets(1) == []
    assert novel_offsets(2) == [1]
    assert novel_offsets(4) == [1, 2, 3]
    assert novel_offsets(24) == [5, 10, 14, 19]


def test_sample_image_is_bilinear_at_the_projected_pixel() -> None:
    g = torch.Generator().manual_seed(1)
    size = 16
    images = torch.rand(2, 4, size, size, generator=g, dtype=torch.float64)
    verts = (torch.rand(2, 5, 3, generator=g, dtype=torch.float64) - 0.5) * 0.8
    az = cameras.view_azimuths(torch.tensor([3, 10])).double()
    got = sample_image(images, verts, az)
    colrow = cameras.ndc_to_pixel(cameras.project(verts, az)[..., :2], size)  # (B, V, 2) continuous (col, row)
    for b in range(2):
        for v in range(5):
            c, r = colrow[b, v].tolist()
            c0, r0 = math.floor(c), math.floor(r)
            fc, fr = c - c0, r - r0
            corners = (((1 - fc) * (1 - fr), r0, c0), (fc * (1 - fr), r0, c0 + 1), ((1 - fc) * fr, r0 + 1, c0),
                       (fc * fr, r0 + 1, c0 + 1))
            want = sum(w * images[b, :, rr, cc] if 0 <= rr < size and 0 <= cc < size else 0 * images[b, :, 0, 0]
                       for w, rr, cc in corners)
            torch.testing.assert_close(got[b, v], want)


def test_sample_head_takes_image_colours_and_falls_back_to_the_mean_colour() -> None:
    size = 16
    alpha = torch.zeros(1, size, size)
    alpha[0, 4:12, 4:12] = 1.0
    rgb = torch.zeros(1, 3, size, size)
    rgb[0, 0, 4:8] = 1.0  # top half of the object red, bottom half green
    rgb[0, 1, 8:12] = 1.0
    images = _premultiplied(rgb, alpha)
    az = cameras.view_azimuths(torch.tensor([0]))
    # the world points that project onto pixel centres (row, col): found by inverting a dense grid
    grid = torch.stack(torch.meshgrid(torch.linspace(-0.5, 0.5, 101), torch.linspace(-0.5, 0.5, 101),
                                      indexing="ij"), -1).reshape(-1, 2)
    pts = torch.cat([grid, torch.zeros(len(grid), 1)], 1)[None]
    pix = cameras.ndc_to_pixel(cameras.project(pts, az)[..., :2], size)[0]

    def near(row: float, col: float) -> torch.Tensor:
        return pts[0, ((pix - torch.tensor([col, row])) ** 2).sum(1).argmin()]

    verts = torch.stack([near(5, 7), near(10, 7), near(0.5, 0.5)])[None]
    colours = ImageSampleColourHead(3)(None, images, verts, az)[0]
    torch.testing.assert_close(colours[0], torch.tensor([1.0, 0.0, 0.0]), atol=0.05, rtol=0)
    torch.testing.assert_close(colours[1], torch.tensor([0.0, 1.0, 0.0]), atol=0.05, rtol=0)
    torch.testing.assert_close(colours[2], torch.tensor([0.5, 0.5, 0.0]), atol=0.05, rtol=0)  # background: mean
    with pytest.raises(ValueError, match="azimuth"):
        ImageSampleColourHead(3)(None, images, verts, None)


class _FreeMesh(torch.nn.Module):
    """A 'model' whose vertices and colours are parameters (the same for every image)."""

    def __init__(self, verts: torch.Tensor, faces: torch.Tensor):
        super().__init__()
        self.verts = torch.nn.Parameter(verts.clone())
        self.colours = torch.nn.Parameter(torch.full_like(verts, 0.5))
        self.faces = faces

    def forward(self, images, azimuth=None, with_colours=False):
        n = images.shape[0]
        v = self.verts[None].expand(n, -1, -1)
        return (v, self.colours[None].expand(n, -1, -1)) if with_colours else v


def _batch(images: torch.Tensor, a: list[int], b: list[int]) -> dict[str, torch.Tensor]:
    return {"image_a": images[0, a], "image_b": images[0, b], "view_a": torch.tensor(a), "view_b": torch.tensor(b)}


@pytest.mark.parametrize("backend", ["softras", "dibr"])
def test_colour_term_sends_gradients_to_colours_and_positions(tiny_dataset: str, backend: str) -> None:
    from recon.data.dataset import iter_objects

    rec = next(iter(iter_objects(tiny_dataset, "train")))
    template = Reconstructor().decoder.template_mesh().detach()
    model = _FreeMesh(template, Reconstructor().faces)
    sil = SilhouetteObjective(model.faces, template.shape[0], 5e-3, 5e-4)
    objective = ColourObjective(sil, lambda_colour=1.0)
    renderer = get_renderer(backend, image_size=rec.images.shape[-1])
    out = objective(model, renderer, model.faces, _batch(rec.images[None], [0, 5], [9, 14]))
    assert {"loss", "iou_loss", "lap", "flat", "colour", "renders"} <= set(out)
    total = (out["iou_loss"] + 5e-3 * out["lap"] + 5e-4 * out["flat"] + out["colour"]).detach()
    assert float(out["loss"].detach()) == pytest.approx(float(total), rel=1e-5)
    gc, gv = torch.autograd.grad(out["colour"], [model.colours, model.verts])
    assert gc.abs().sum() > 0 and torch.isfinite(gc).all()
    assert gv.abs().sum() > 0 and torch.isfinite(gv).all()  # the colour term moves the vertices too


@pytest.mark.parametrize("head", ["latent", "sample"])
def test_colour_objective_trains_the_colour_head_and_the_decoder(tiny_dataset: str, head: str) -> None:
    from recon.data.dataset import iter_objects

    torch.manual_seed(0)
    rec = next(iter(iter_objects(tiny_dataset, "train")))
    model = Reconstructor(colour=head)
    cfg = TrainConfig(colour=True)
    objective = ColourObjective(SilhouetteObjective.from_config(cfg, model), cfg.lambda_colour)
    renderer = get_renderer("softras", image_size=rec.images.shape[-1], impl="cpp")
    out = objective(model, renderer, model.faces, _batch(rec.images[None], [0, 5], [9, 14]))
    out["colour"].backward()
    assert model.decoder.fc_offsets.weight.grad.abs().sum() > 0  # positions, through the colour renders
    if head == "latent":
        assert model.colour_head.fc2.weight.grad.abs().sum() > 0
    else:
        assert not list(model.colour_head.parameters())


def test_object_colour_scores_and_the_record(tiny_dataset: str) -> None:
    from recon.data.dataset import iter_objects

    rec = next(iter(iter_objects(tiny_dataset, "test")))
    model = Reconstructor(colour="latent").eval()
    renderer = get_renderer("softras", image_size=rec.images.shape[-1])
    views = [0, 6, 12, 18]
    with torch.no_grad():
        verts, colours = model(rec.images[views], cameras.view_azimuths(torch.tensor(views)), with_colours=True)
    mean = object_mean_colour(rec.images)
    flat = mean[None, None].expand_as(colours)
    s = object_colour_scores(renderer, model.faces, verts, flat, rec.images, views)
    assert set(s) == set(COLOUR_METRICS) | {BASELINE_PREFIX + k for k in COLOUR_METRICS}
    # painted with the mean colour, the prediction scores exactly like the baseline
    for k in COLOUR_METRICS:
        assert len(s[k]) == 4 and np.allclose(s[k], s[BASELINE_PREFIX + k])
    # the novel-view score is the mean of the scores at the other views
    az = cameras.view_azimuths(torch.tensor(views))
    with torch.no_grad():
        rgba = renderer.rgba(verts[:1].expand(4, -1, -1), model.faces, az, flat[:1].expand(4, -1, -1))
    at = colour_scores(rgba, rec.images[views])["psnr"]
    assert s["psnr"][0] == pytest.approx(float(at[0])) and s["psnr_novel"][0] == pytest.approx(float(at[1:].mean()))
    per = {"chair": {"iou": 0.5, "n": 4, **{k: float(np.mean(v)) for k, v in s.items()}}}
    record = colour_record(per)
    assert set(per["chair"]) == {"iou", "n", *COLOUR_METRICS}
    row = record["colour_baselines"]["mean_colour"]
    assert row["mean_iou"] == 0.5 and row["mean_loss"] is None and row["per_category"]["chair"]["n"] == 4
    assert record["mean_psnr"] == pytest.approx(row["mean_psnr"])


def _train_cfg(data: str, out: Path, **kw) -> TrainConfig:
    base = dict(data=data, out=str(out), iterations=3, batch_size=2, val_every=3, val_objects=1, val_views="1",
                log_every=1, device="cpu", tensorboard=False, threads=1)
    base.update(kw)
    return TrainConfig(**base)


def test_colour_training_and_eval_end_to_end(tiny_dataset: str, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import trimesh

    import recon.report.eval_figures
    from recon.data.dataset import iter_objects

    pages = []
    write_page = recon.report.eval_figures.write_viewer_page
    monkeypatch.setattr(recon.report.eval_figures, "write_viewer_page",
                        lambda items, *a, **k: (pages.append(items), write_page(items, *a, **k)))
    out = tmp_path / "colour"
    train(_train_cfg(tiny_dataset, out, colour=True))
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("colour" in r for r in lines if "loss" in r) and any("val_psnr" in r for r in lines)
    model, _ = load_model(out / "last.pt")
    assert model.colour_head is not None
    rec = evaluate_run(EvalConfig(checkpoint=str(out), data=tiny_dataset, split="test", views="2", device="cpu",
                                  figures=1, full_metrics=False))
    data = json.loads((out / "eval_test.json").read_text())
    assert data["mean_psnr"] == pytest.approx(rec["mean_psnr"]) and 0 < data["mean_psnr"] < 100
    for m in data["per_category"].values():
        assert set(COLOUR_METRICS) <= set(m) and not any(k.startswith(BASELINE_PREFIX) for k in m)
    base = data["colour_baselines"]["mean_colour"]
    assert base["mean_loss"] is None and set(base["per_category"]) == {"chair", "table"}
    assert base["mean_iou"] == pytest.approx(data["mean_iou"]) and base["mean_psnr"] > 0
    assert all("psnr" in r for r in data["per_object"])
    # the saved meshes and the 3D page carry the predicted colours of the first object's first view
    firsts = {}
    for r in iter_objects(tiny_dataset, "test"):
        firsts.setdefault(r.name, r)
    for name, r in firsts.items():
        with torch.no_grad():
            _, want = model(r.images[:1], cameras.view_azimuths(torch.tensor([0])), with_colours=True)
        ply = out / "eval_test" / "meshes" / f"{name}_{r.object_id}_view00.ply"
        rgb = np.asarray(trimesh.load(ply, process=False).visual.vertex_colors)[:, :3].astype(np.float64) / 255
        assert np.abs(rgb - want[0].numpy()).max() <= 1 / 255 + 1e-6
    (items,) = pages
    assert len(items) == 2 and all(item.colours is not None for item in items)


def test_silhouette_only_checkpoints_load_and_evaluate_without_colour(tiny_dataset: str, tmp_path: Path) -> None:
    out = tmp_path / "sil"
    train(_train_cfg(tiny_dataset, out, iterations=1, val_every=1))
    state = torch.load(out / "last.pt", weights_only=True)
    assert not any(k.startswith("colour_head") for k in state["model"])
    model, _ = load_model(out / "last.pt")
    assert model.colour_head is None
    with pytest.raises(ValueError, match="no colour head"):
        model(torch.zeros(1, 4, 64, 64), with_colours=True)
    rec = evaluate_run(EvalConfig(checkpoint=str(out), data=tiny_dataset, split="test", views="1", device="cpu",
                                  figures=0, full_metrics=False))
    assert "mean_psnr" not in rec and "colour_baselines" not in rec
    assert not any("psnr" in m for m in rec["per_category"].values())


def test_colour_needs_a_backend_with_a_colour_render(tiny_dataset: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--colour needs a backend"):
        _train_cfg(tiny_dataset, tmp_path / "x", colour=True, backend="kaolin").check_flags()
    with pytest.raises(ValueError, match="--lambda-colour"):
        _train_cfg(tiny_dataset, tmp_path / "x", colour=True, lambda_colour=-1.0).check_flags()
