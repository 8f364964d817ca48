"""pipelines.predict: image loading, segmentation, framing, outputs and per-file errors."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from recon.data.image_io import FILL, ImageError, fill_holes, largest_component, load_rgba, prepare_image, \
    segment_foreground


def _shape_mask(h: int = 180, w: int = 240) -> np.ndarray:
    """A chair-like silhouette: seat, back and two legs (non-convex)."""
    im = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(im)
    d.rectangle([70, 90, 170, 110], fill=255)    # seat
    d.rectangle([70, 20, 90, 110], fill=255)     # back
    d.rectangle([70, 110, 80, 160], fill=255)    # legs
    d.rectangle([160, 110, 170, 160], fill=255)
    d.ellipse([100, 40, 150, 85], fill=255)      # a blob touching nothing
    d.rectangle([100, 60, 150, 90], fill=255)    # ... joined to the seat
    return np.asarray(im) > 127


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("images")
    mask = _shape_mask()
    rng = np.random.default_rng(0)
    # JPEG, no alpha: a shaded red object on a white background, plus sensor noise.
    rgb = np.full(mask.shape + (3,), 255, np.float32)
    shade = np.linspace(0.5, 1.0, mask.shape[1])[None, :, None] * np.array([200, 40, 30])
    rgb = np.where(mask[..., None], shade, rgb) + rng.normal(0, 3, rgb.shape)
    jpg = d / "chair photo.jpg"
    Image.fromarray(rgb.clip(0, 255).astype(np.uint8)).save(jpg, quality=90)
    # PNG with alpha: the object on a transparent background (RGB behind it is garbage on purpose).
    rgba = np.zeros(mask.shape + (4,), np.uint8)
    rgba[..., :3] = rng.integers(0, 255, mask.shape + (3,))
    rgba[..., 3] = mask * 255
    png = d / "cutout.png"
    Image.fromarray(rgba, "RGBA").save(png)
    bad = d / "notes.png"
    bad.write_text("this is not an image\n")
    return {"jpg": jpg, "png": png, "bad": bad, "missing": d / "missing.jpg", "mask": mask}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained (but valid) checkpoint: prediction plumbing does not need a trained model."""
    from recon.checkpoint import save_checkpoint
    from recon.config import TrainConfig
    from recon.models import Reconstructor

    torch.manual_seed(0)
    model = Reconstructor("attention")
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint({"version": 1, "model": model.state_dict(), "step": 0,
                     "config": asdict(TrainConfig(encoder="attention"))}, path)
    return path


def test_segmentation_recovers_drawn_shape_from_jpeg(images) -> None:
    rgba, has_alpha = load_rgba(images["jpg"])
    assert not has_alpha
    mask = segment_foreground(rgba[..., :3])
    assert _iou(mask, images["mask"]) > 0.9


def test_largest_component_and_hole_filling() -> None:
    m = np.zeros((20, 20), bool)
    m[2:12, 2:12] = True
    m[5:8, 5:8] = False          # a hole
    m[15:18, 15:18] = True       # a smaller speck
    out = fill_holes(largest_component(m))
    expected = np.zeros_like(m)
    expected[2:12, 2:12] = True
    assert np.array_equal(out, expected)


def test_prepare_uses_alpha_and_frames_like_the_dataset(images) -> None:
    p = prepare_image(images["png"], size=64)
    assert p.used_alpha and p.image.shape == (4, 64, 64) and p.image.dtype == torch.float32
    alpha = p.image[3]
    ys, xs = torch.nonzero(alpha > 0.5, as_tuple=True)
    side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1).item()
    assert abs(side - FILL * 64) <= 2
    cy, cx = (ys.max() + ys.min()).item() / 2, (xs.max() + xs.min()).item() / 2
    assert abs(cy - 31.5) <= 1.5 and abs(cx - 31.5) <= 1.5
    # premultiplied like the dataset: RGB is black wherever alpha is 0
    assert float(p.image[:3][:, alpha == 0].abs().max()) == 0.0


def test_opaque_alpha_falls_back_to_segmentation(images, tmp_path: Path) -> None:
    rgb = np.asarray(Image.open(images["jpg"]).convert("RGB"))
    path = tmp_path / "opaque.png"
    Image.fromarray(rgb).convert("RGBA").save(path)
    p = prepare_image(path)
    assert not p.used_alpha and _iou(p.mask, images["mask"]) > 0.9


def test_plain_image_and_non_image_are_rejected(images, tmp_path: Path) -> None:
    path = tmp_path / "blank.png"
    Image.new("RGB", (50, 50), (255, 255, 255)).save(path)
    with pytest.raises(ImageError, match="no object"):
        prepare_image(path)
    with pytest.raises(ImageError, match="not an image"):
        prepare_image(images["bad"])
    with pytest.raises(ImageError, match="no such file"):
        prepare_image(images["missing"])


def test_predict_cli_processes_valid_images_and_reports_bad_ones(images, checkpoint, tmp_path: Path, capsys) -> None:
    from pipelines import predict
    from recon.mesh import load_obj

    out = tmp_path / "out"
    argv = [str(images["png"]), str(images["bad"]), str(images["jpg"]), str(images["missing"]),
            "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu"]
    with pytest.raises(SystemExit) as exc:
        predict.main(argv)
    assert exc.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"error: {images['bad']}: not an image (expected PNG or JPEG)",
                   f"error: {images['missing']}: no such file"]
    for stem in ("cutout", "chair photo"):
        verts, faces = load_obj(out / f"{stem}.obj")
        assert verts.shape == (642, 3) and faces.shape == (1280, 3)
        strip = Image.open(out / f"{stem}_turntable.png")
        assert strip.size == (128 * 10, 128)  # original, model input, 8 views
    assert sorted(p.name for p in out.iterdir()) == ["chair photo.obj", "chair photo_turntable.png",
                                                     "cutout.obj", "cutout_turntable.png"]
    # all valid -> exit status 0
    assert predict.main([str(images["png"]), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "o2"),
                         "--device", "cpu"]) == 0


def test_predict_cli_bad_checkpoint_is_one_line(images, tmp_path: Path, capsys) -> None:
    from pipelines import predict

    with pytest.raises(SystemExit) as exc:
        predict.main([str(images["png"]), "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
