"""pipelines.predict: image loading, segmentation, framing, outputs and per-file errors."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from recon.data.image_io import EMBEDDED_FILLS, FillStats, Framing, ImageError, fill_holes, largest_component, \
    load_rgba, object_fills, prepare_image, segment_foreground


def _shape_mask(h: int = 180, w: int = 240) -> np.ndarray:
    """A chair-like silhouette: seat, back and two legs (non-convex); bbox rows 20-160, cols 70-170."""
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


def _bbox(alpha: torch.Tensor) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1) inclusive of the pixels with alpha > 0.5."""
    ys, xs = torch.nonzero(alpha > 0.5, as_tuple=True)
    return ys.min().item(), ys.max().item(), xs.min().item(), xs.max().item()


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
    """An untrained (but valid) checkpoint: prediction plumbing does not need a trained model. Its
    training data is absent, so predict frames with the embedded dataset's fill statistics."""
    from recon.checkpoint import save_checkpoint
    from recon.config import TrainConfig
    from recon.models import Reconstructor

    torch.manual_seed(0)
    model = Reconstructor("attention")
    d = tmp_path_factory.mktemp("ckpt")
    path = d / "model.pt"
    config = asdict(TrainConfig(encoder="attention", data=str(d / "absent.h5")))
    save_checkpoint({"version": 1, "model": model.state_dict(), "step": 0, "config": config}, path)
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


def test_object_fills_match_a_per_image_loop() -> None:
    rng = np.random.default_rng(1)
    alpha = (rng.random((30, 12, 17)) < 0.02).astype(np.uint8) * rng.integers(1, 256, (30, 12, 17), dtype=np.uint8)
    alpha[0] = 0  # an empty image
    expected = []
    for a in alpha:
        ys, xs = np.nonzero(a)
        expected.append(0.0 if len(ys) == 0 else max(np.ptp(ys) + 1, np.ptp(xs) + 1) / 17)
    assert np.allclose(object_fills(alpha), expected)
    stats = FillStats.measure(alpha, "test")
    assert stats.low <= stats.median <= stats.high and stats.source == "test"


def test_auto_centres_a_non_square_cutout_keeping_its_own_fill(images) -> None:
    p = prepare_image(images["png"], size=64)
    assert p.used_alpha and p.framing == "centred"
    assert p.image.shape == (4, 64, 64) and p.image.dtype == torch.float32
    own = 141 / 240  # bbox side (rows 20..160) over the image's longer side
    assert p.fill == pytest.approx(own)
    r0, r1, c0, c1 = _bbox(p.image[3])
    assert abs((r1 - r0 + 1) - own * 64) <= 1.5
    assert abs((r0 + r1) / 2 - 31.5) <= 1 and abs((c0 + c1) / 2 - 31.5) <= 1
    # premultiplied like the dataset: RGB is black wherever alpha is 0, values on the 8-bit grid
    assert float(p.image[:3][:, p.image[3] == 0].abs().max()) == 0.0
    assert torch.equal(p.image, (p.image * 255).round() / 255)


def test_fill_framing_and_clamping(images, tmp_path: Path) -> None:
    p = prepare_image(images["png"], framing=Framing("fill", 0.8))
    assert p.fill == pytest.approx(0.8)
    r0, r1, _, _ = _bbox(p.image[3])
    assert abs((r1 - r0 + 1) - 0.8 * 64) <= 1.5
    assert prepare_image(images["png"], framing=Framing("fill")).fill == pytest.approx(EMBEDDED_FILLS.median)
    # a small object in a large photo is enlarged to the smallest fill seen in training, not kept at 20 %
    small = np.full((300, 400, 3), 240, np.uint8)
    small[100:160, 150:210] = (20, 60, 200)
    path = tmp_path / "small.jpg"
    Image.fromarray(small).save(path, quality=95)
    assert prepare_image(path).fill == pytest.approx(EMBEDDED_FILLS.low)
    custom = FillStats(0.3, 0.4, 0.5, "custom")
    assert prepare_image(path, fills=custom).fill == pytest.approx(0.3)


def test_as_is_keeps_the_frame(tmp_path: Path) -> None:
    """A square render: nothing is moved or cropped, the object stays off-centre at its size."""
    rgba = np.zeros((128, 128, 4), np.uint8)
    rgba[8:40, 64:120] = (200, 100, 50, 255)
    path = tmp_path / "render.png"
    Image.fromarray(rgba, "RGBA").save(path)
    p = prepare_image(path)
    assert p.framing == "as-is" and p.fill == pytest.approx(56 / 128)
    assert _bbox(p.image[3]) == (4, 19, 32, 59)  # the 2x2 area average of the 128 px image
    # as-is on a non-square image pads it to a square, centred
    wide = np.zeros((64, 128, 4), np.uint8)
    wide[16:48, 0:128] = 255
    Image.fromarray(wide, "RGBA").save(tmp_path / "wide.png")
    w = prepare_image(tmp_path / "wide.png", framing=Framing("as-is"))
    assert _bbox(w.image[3]) == (24, 39, 0, 63)


def test_sixteen_bit_grayscale_png(tmp_path: Path) -> None:
    """Pillow's own conversion clips 16-bit values to 255: the old code saw a plain white image."""
    gray = np.full((60, 80), 1000, np.uint16)
    gray[15:45, 20:60] = 50000
    path = tmp_path / "gray16.png"
    Image.fromarray(gray).save(path)
    assert Image.open(path).mode == "I;16"
    rgba, has_alpha = load_rgba(path)
    assert not has_alpha and rgba.dtype == np.uint8
    assert rgba[0, 0, 0] == round(1000 / 257) and rgba[20, 30, 0] == round(50000 / 257)
    p = prepare_image(path)
    assert p.mask.sum() == 30 * 40 and p.mask[15:45, 20:60].all()
    # a tRNS transparent value becomes alpha 0
    im = Image.fromarray(gray)
    im.save(tmp_path / "gray16_trns.png", transparency=1000)
    rgba, has_alpha = load_rgba(tmp_path / "gray16_trns.png")
    assert has_alpha and (rgba[..., 3] == 255).sum() == 30 * 40


def test_jpeg_exif_orientation_is_applied(tmp_path: Path) -> None:
    """Orientation 6 (the camera was turned 90 degrees clockwise): the stored 80x40 pixels show
    a 40x80 picture. The old code ignored the tag and read the image sideways."""
    stored = np.full((40, 80, 3), 255, np.uint8)
    stored[5:15, 10:30] = (200, 0, 0)  # a red block near the stored top-left corner
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    im.save(path, exif=exif, quality=95)
    rgba, _ = load_rgba(path)
    assert rgba.shape[:2] == (80, 40)
    expected = np.rot90(stored, k=-1)  # rotate 90 degrees clockwise
    red = (rgba[..., 0] > 150) & (rgba[..., 1] < 100)
    assert _iou(red, (expected[..., 0] > 150) & (expected[..., 1] < 100)) > 0.8


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
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.strip()]
    assert err == [f"error: {images['bad']}: not an image (expected PNG or JPEG)",
                   f"error: {images['missing']}: no such file"]
    assert "absent.h5 is not here" in captured.out  # says where the framing statistics came from
    assert f"{images['png']} (alpha channel, centred, object fills 59%)" in captured.out
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


@pytest.mark.parametrize("flags, message", [
    (["--size", "128"], "unrecognized arguments: --size 128"),  # the model's input size is fixed by the checkpoint
    (["--framing", "as-is", "--fill", "0.7"], "--fill applies to --framing fill only"),
    (["--fill", "1.5"], "--fill 1.5: expected a fraction of the frame in [0.1, 1]"),
    (["--framing", "crop"], "argument --framing: invalid choice"),
])
def test_predict_cli_bad_flags_are_one_line_before_any_work(flags, message, images, checkpoint, tmp_path: Path,
                                                            capsys) -> None:
    """The old --size 128 failed once per image with 'mat1 and mat2 shapes cannot be multiplied'."""
    from pipelines import predict

    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        predict.main([str(images["png"]), str(images["jpg"]), "--checkpoint", str(checkpoint), "--out", str(out),
                      "--device", "cpu", *flags])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]
    assert not out.exists()


def test_predict_cli_bad_checkpoint_is_one_line(images, tmp_path: Path, capsys) -> None:
    from pipelines import predict

    with pytest.raises(SystemExit) as exc:
        predict.main([str(images["png"]), "--checkpoint", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_predict_cli_out_that_is_a_file_is_refused_before_any_work(images, checkpoint, tmp_path: Path,
                                                                   capsys) -> None:
    from pipelines import predict

    out = tmp_path / "taken"
    out.write_text("keep me\n")
    with pytest.raises(SystemExit) as exc:
        predict.main([str(images["png"]), "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: --out {out}: exists and is not a directory"]
    assert out.read_text() == "keep me\n"
