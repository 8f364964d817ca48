"""Predict frames images like the training images: an image exported from the dataset gives
exactly eval's mesh for that view, at the dataset's resolution or upscaled."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from recon.data.dataset import iter_objects
from recon.data.image_io import EMBEDDED_FILLS, FillStats, Framing, dataset_image_to_rgba, prepare_image
from recon.workflows.predict import FILL_SAMPLE_OBJECTS, training_fills

VIEWS = (0, 7, 13, 22)
# The model inputs are bit-identical (asserted), so the meshes differ only by float32 reassociation
# between eval's batch of 24 views and predict's batch of 1 (measured <= 6e-8) and the .obj's six
# decimals (<= 5e-7): 1e-6 bounds both. A wrong framing moves vertices by > 1e-3 (asserted below).
TOL = 1e-6


def _as_uint8(image: torch.Tensor) -> np.ndarray:
    """A dataset tensor (4, S, S) in k/255 back to the stored uint8."""
    return (image * 255).round().to(torch.uint8).numpy()


@pytest.fixture(scope="module")
def model_and_checkpoint(tiny_dataset, tmp_path_factory) -> tuple[torch.nn.Module, Path]:
    """A seeded random ResNet reconstructor whose BatchNorm statistics are those of the training
    images (so, like a trained model and unlike a freshly initialised one, its mesh depends on the
    image by millimetres, not micrometres), saved as a checkpoint that names the tiny dataset."""
    from recon.checkpoint import save_checkpoint
    from recon.config import TrainConfig
    from recon.models import Reconstructor

    torch.manual_seed(0)
    model = Reconstructor("resnet")
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average over the calibration batch
            m.reset_running_stats()
    train = torch.cat([rec.images for rec in iter_objects(tiny_dataset, "train")])
    model.train()
    with torch.no_grad():
        model(train)
    model.eval()
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    config = asdict(TrainConfig(encoder="resnet", data=tiny_dataset))
    save_checkpoint({"version": 1, "model": model.state_dict(), "step": 0, "config": config}, path)
    return model, path


def test_exported_dataset_image_gives_evals_mesh(tiny_dataset, model_and_checkpoint, tmp_path: Path) -> None:
    from pipelines import predict
    from recon.mesh import load_obj

    model, checkpoint = model_and_checkpoint
    rec = next(iter_objects(tiny_dataset, "test", categories=["chair"]))
    with torch.no_grad():
        eval_verts = model(rec.images)  # as recon.evaluate runs it: every view of the object in one batch
    paths = []
    for v in VIEWS:
        rgba = dataset_image_to_rgba(_as_uint8(rec.images[v]))
        paths.append(tmp_path / f"chair_view{v}.png")
        Image.fromarray(rgba, "RGBA").save(paths[-1])
        big = Image.fromarray(rgba, "RGBA").resize((256, 256), Image.NEAREST)  # the same render at 4x
        paths.append(tmp_path / f"chair_view{v}_x4.png")
        big.save(paths[-1])
    out = tmp_path / "out"
    assert predict.main([*map(str, paths), "--checkpoint", str(checkpoint), "--out", str(out), "--device", "cpu"]) == 0
    for i, v in enumerate(VIEWS):
        for path in paths[2 * i: 2 * i + 2]:
            prepared = prepare_image(path)
            assert prepared.framing == "as-is" and torch.equal(prepared.image, rec.images[v])
            verts, _ = load_obj(out / f"{path.stem}.obj")
            assert (verts - eval_verts[v]).abs().max().item() < TOL
        # the framing predict used before (object re-framed to 65 % of the frame) gives another mesh
        with torch.no_grad():
            refilled = model(prepare_image(paths[2 * i], framing=Framing("fill", 0.65)).image[None])[0]
        assert (refilled - eval_verts[v]).abs().max().item() > 1e-3


def test_every_exported_view_round_trips_exactly(tiny_dataset, tmp_path: Path) -> None:
    """Straight-alpha export + predict's premultiply and 8-bit rounding invert each other exactly."""
    for rec in iter_objects(tiny_dataset, "test"):
        for v in range(rec.images.shape[0]):
            path = tmp_path / f"{rec.category}_{rec.index}_{v}.png"
            Image.fromarray(dataset_image_to_rgba(_as_uint8(rec.images[v])), "RGBA").save(path)
            assert torch.equal(prepare_image(path).image, rec.images[v]), (rec.category, rec.index, v)


def test_training_fills_are_measured_on_the_checkpoints_dataset(tiny_dataset, tmp_path: Path) -> None:
    import h5py

    fills = training_fills({"data": tiny_dataset})
    with h5py.File(tiny_dataset, "r") as f:
        alpha = np.concatenate([f[k]["train"]["images"][:FILL_SAMPLE_OBJECTS, :, 3].reshape(-1, 64, 64) for k in f])
    assert fills == FillStats.measure(alpha, f"{tiny_dataset} (train split)")
    assert 0.3 < fills.low < fills.median < fills.high <= 1.0
    missing = training_fills({"data": str(tmp_path / "moved.h5")})
    assert (missing.low, missing.median, missing.high) == (EMBEDDED_FILLS.low, EMBEDDED_FILLS.median,
                                                          EMBEDDED_FILLS.high)
    assert "moved.h5 is not here" in missing.source
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    assert "unusable" in training_fills({"data": str(tmp_path / "junk.h5")}).source


class _MeshModel(torch.nn.Module):
    """A stand-in reconstructor that answers every image with one fixed mesh (here: the object's GT
    mesh): its silhouette matches an input exactly when the input is framed as the dataset frames
    that object, so the self-consistent search must find that framing."""

    def __init__(self, verts: torch.Tensor, faces: torch.Tensor):
        super().__init__()
        self.verts, self.faces = verts, faces

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.verts.expand(images.shape[0], -1, -1).clone()


def _picture(render: np.ndarray, path: Path, side: int, at: tuple[int, int], canvas: int = 256) -> None:
    """A (4, S, S) uint8 dataset render flattened onto a white ``canvas`` (JPEG), its frame resized to
    ``side`` px with its top-left corner at ``at`` (x, y)."""
    rgba = Image.fromarray(dataset_image_to_rgba(render), "RGBA").resize((side, side), Image.BICUBIC)
    page = Image.new("RGBA", (canvas, canvas), (255, 255, 255, 255))
    page.alpha_composite(rgba, at)
    page.convert("RGB").save(path, quality=92)


@pytest.mark.parametrize("picture", ["white", "canvas"])
def test_self_consistent_framing_finds_the_training_framing(tiny_dataset, tmp_path: Path, picture: str) -> None:
    """A test object's render as a JPEG on white: at the training framing (``white``), or at half size
    and off-centre on a 256-px canvas (``canvas``). With a model whose mesh is the object's own, the
    search must frame it as the dataset did (fill and centre of the object); the rule auto used
    before (object centred at its own fill, clamped) misplaces it."""
    from recon.data.image_io import object_centres, object_fills
    from recon.workflows.predict import Predictor
    from recon.data.ground_truth import GroundTruth

    rec = next(iter_objects(tiny_dataset, "test", categories=["chair"]))
    with GroundTruth(tiny_dataset, "softras") as gt:
        verts, faces = gt.mesh(rec.category, "test", rec.index)
    fills = training_fills({"data": tiny_dataset})
    render = _as_uint8(rec.images[11])
    true_fill, true_centre = float(object_fills(render[3])), object_centres(render[3])
    assert fills.low <= true_fill <= fills.high and abs(true_centre).max() > 1.5 / 64  # framed off the centre
    path = tmp_path / f"{picture}.jpg"
    _picture(render, path, *((256, (0, 0)) if picture == "white" else (128, (112, 24))))

    predictor = Predictor(_MeshModel(verts, faces), fills, "cpu")
    out = predictor.reconstruct(path)
    framed = out.prepared
    assert framed.framing == "self-consistent" and out.choice is not None and out.choice.candidates > 1
    # white: the picture's own frame is a candidate (its segmented mask loses up to ~2 px of soft edge
    # against the render's alpha > 0); canvas: the search grid's steps
    tol = (1 / 64 if picture == "white" else 2.5 / 64) + 1e-9
    assert abs(framed.fill - true_fill) <= max(tol, 2 / 64)
    assert np.abs(np.asarray(framed.centre) - true_centre).max() <= tol

    def mask_iou(image: torch.Tensor) -> float:
        a, b = image[3] > 0.5, torch.from_numpy(render[3] > 127)
        return float((a & b).sum() / (a | b).sum())

    assert mask_iou(framed.image) > 0.7  # thin legs: a pixel off costs a lot of mask IoU
    old = prepare_image(path, fills=fills)  # the model-free rule: centred at its own fill, clamped
    if picture == "white":
        assert np.abs(np.asarray(old.centre) - true_centre).max() > tol
    else:
        assert mask_iou(framed.image) > mask_iou(old.image) + 0.05


def test_candidate_framings_stay_within_the_training_range() -> None:
    from recon.framing import FramingSearch, candidate_frames, refine_frames

    search = FramingSearch()
    own = (0.6, (0.01, 0.02))
    first = candidate_frames(EMBEDDED_FILLS, own, search)
    assert first[0] == own and len(first) == search.fill_steps + 1
    assert candidate_frames(EMBEDDED_FILLS, (0.2, (0.0, 0.0)), search)[0] != (0.2, (0.0, 0.0))  # own too small
    fills = [f for f, _ in first[1:]]
    assert fills[0] == pytest.approx(EMBEDDED_FILLS.lowest) and fills[-1] == pytest.approx(EMBEDDED_FILLS.highest)
    second = refine_frames(first[5], EMBEDDED_FILLS, search)
    assert len(second) == 3 * search.centre_steps ** 2 - 1 and first[5] not in second
    for f, (x, y) in second:
        assert EMBEDDED_FILLS.lowest <= f <= EMBEDDED_FILLS.highest
        assert EMBEDDED_FILLS.centre_low[0] - 1e-9 <= x <= EMBEDDED_FILLS.centre_high[0] + 1e-9
        assert EMBEDDED_FILLS.centre_low[1] - 1e-9 <= y <= EMBEDDED_FILLS.centre_high[1] + 1e-9
    # at the range's edge the half step outside it is left out
    assert len(refine_frames(first[1], EMBEDDED_FILLS, search)) == 2 * search.centre_steps ** 2 - 1
