"""The app's "Try it" tab without the web part: one model in memory, an image file in, the mesh
files and a silhouette check out.

The mesh comes from ``recon.workflows.predict.Predictor.reconstruct``, the step ``pipelines.predict`` writes its
files from, with the same framing (``auto``, fills measured on the checkpoint's training data), so an
image gives the app the mesh ``pipelines.predict`` writes for it. The files are written by the
project's writers (``recon.mesh.save_obj``, ``recon.report.mesh_export.save_glb`` / ``save_ply``; grey for a
geometry-only checkpoint, vertex colours for a coloured one).

Requests are served one at a time: ``AppService.lock`` guards the model (the web front end also
queues its events with a concurrency limit of 1), so memory holds one model and one request's
tensors, whatever the number of clients. Each answer's files go to a fresh folder under the work
directory, of which only the newest ``KEEP_ANSWERS`` are kept (disk stays bounded too).
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from recon import cameras
from recon.data.image_io import Framing, ImageError
from recon.data.raster import render_views
from recon.io import atomic_write_bytes
from recon.mesh import save_obj
from recon.report.mesh_export import save_glb, save_ply
from recon.workflows.predict import Predictor, Reconstruction, estimate_input_view
from recon.runs import resolve_checkpoint
from recon.runtime import one_thread

__all__ = ["MAX_PIXELS", "KEEP_ANSWERS", "TILE", "Answer", "AppService", "check_pixels", "silhouette_png"]

MAX_PIXELS = 40_000_000  # larger pictures are refused before decoding (a 20000 x 20000 PNG is 1.6 GB as RGBA)
KEEP_ANSWERS = 64        # answer folders kept on disk (older ones are removed)
TILE = 192               # side of each tile of the silhouette figure, pixels


@dataclass(frozen=True)
class Answer:
    """One picture's reconstruction as the app shows it: the mesh files (``glb`` with vertex colours
    or grey, ``obj``, ``ply``), ``figure`` (PNG: model input | silhouette at ``view`` | overlay), the
    silhouette ``iou`` against the input's mask at the best-matching training ``view``, the mesh
    ``verts (V, 3)``, a one-paragraph ``summary`` and the ``seconds`` it took (model and files)."""

    glb: Path
    obj: Path
    ply: Path
    figure: Path
    view: int
    iou: float
    verts: torch.Tensor
    summary: str
    seconds: float


def check_pixels(path: str | os.PathLike, limit: int = MAX_PIXELS) -> None:
    """Refuse a picture whose header declares more than ``limit`` pixels, before decoding it.
    Files Pillow cannot identify pass: ``prepare_image`` says what is wrong with them.

    Raises:
        ImageError: too many pixels.
    """
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Image.DecompressionBombError as e:
        raise ImageError(f"image is too large: {e}") from None
    except (OSError, SyntaxError, ValueError):
        return
    if w * h > limit:
        raise ImageError(f"image is too large ({w}x{h} pixels = {w * h / 1e6:.0f} megapixels; "
                         f"the app takes at most {limit / 1e6:.0f})")


def _on_white(model_input: torch.Tensor) -> np.ndarray:
    """(4, S, S) premultiplied RGBA in [0, 1] -> (S, S, 3) uint8 over white."""
    a = model_input[3:4].clamp(0, 1)
    rgb = (model_input[:3] + (1 - a)).clamp(0, 1)
    return (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


def silhouette_png(model_input: torch.Tensor, silhouette: np.ndarray, tile: int = TILE) -> bytes:
    """The check figure: the model input, the mesh's silhouette (black on white) and their overlay
    (both: dark grey, input mask only: red, silhouette only: blue), each enlarged to ``tile`` pixels.

    Args:
        model_input: (4, S, S) premultiplied RGBA in [0, 1]; silhouette: (S, S) bool.
    """
    mask = model_input[3].numpy() > 0.5
    sil = np.where(silhouette[..., None], 0, 255).astype(np.uint8).repeat(3, -1)
    overlay = np.full(mask.shape + (3,), 255, np.uint8)
    overlay[mask & silhouette] = (70, 70, 70)
    overlay[mask & ~silhouette] = (220, 40, 40)
    overlay[~mask & silhouette] = (40, 90, 220)
    gap = np.full((tile, 6, 3), 255, np.uint8)
    tiles = []
    for t in (_on_white(model_input), sil, overlay):
        tiles += [np.asarray(Image.fromarray(t).resize((tile, tile), Image.NEAREST)), gap]
    strip = np.concatenate(tiles[:-1], axis=1)
    buf = io.BytesIO()
    Image.fromarray(strip).save(buf, format="PNG")
    return buf.getvalue()


class AppService:
    """One model in memory and the folder its answers are written to.

    Args:
        predictor: the loaded model (``Predictor.load``); ``checkpoint``: the file it came from.
        work_dir: where answer folders go (created; removed by ``close`` when ``owns_work_dir``).
    """

    def __init__(self, predictor: Predictor, work_dir: str | os.PathLike, owns_work_dir: bool = False,
                 checkpoint: str | os.PathLike = ""):
        self.predictor = predictor
        self.checkpoint = str(checkpoint)
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.owns_work_dir = owns_work_dir
        self.lock = threading.RLock()
        self._answers: list[Path] = []
        self.served = 0

    @classmethod
    def load(cls, checkpoint: str | os.PathLike, device: str = "auto", precision: str = "auto",
             work_dir: str | os.PathLike | None = None) -> "AppService":
        """Load a checkpoint file or run directory (``Predictor.load``); ``work_dir`` None: a temp folder.

        Raises:
            CheckpointError: no usable checkpoint; ValueError: bad device or precision.
        """
        predictor = Predictor.load(checkpoint, device, precision)
        path = resolve_checkpoint(checkpoint)
        if work_dir is None:
            return cls(predictor, tempfile.mkdtemp(prefix="recon-app-"), owns_work_dir=True, checkpoint=path)
        return cls(predictor, work_dir, checkpoint=path)

    def close(self) -> None:
        """Remove the work folder if this service made it."""
        if self.owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def _answer_dir(self) -> Path:
        d = Path(tempfile.mkdtemp(prefix="answer-", dir=self.work_dir))
        self._answers.append(d)
        while len(self._answers) > KEEP_ANSWERS:
            shutil.rmtree(self._answers.pop(0), ignore_errors=True)
        return d

    def reconstruct(self, path: str | os.PathLike) -> Reconstruction:
        """``Predictor.reconstruct`` of one picture (framing ``auto``, view estimated), under the lock.

        Raises:
            ImageError: the picture cannot be used (not an image, too large, no object).
        """
        check_pixels(path)
        with self.lock:
            return self.predictor.reconstruct(path, Framing(), None)

    def try_image(self, path: str | os.PathLike, name: str | None = None) -> Answer:
        """Reconstruct one picture and write its mesh files and check figure (``Answer``).

        Args:
            name: file stem of the outputs (default: the picture's).
        Raises:
            ImageError: the picture cannot be used; the message says why (without the file name).
        """
        with self.lock:  # one request at a time: one request's tensors in memory
            return self._try_image(path, name)

    def _try_image(self, path: str | os.PathLike, name: str | None) -> Answer:
        t0 = time.perf_counter()
        rec = self.reconstruct(path)
        view, iou = rec.view, rec.view_iou
        if view is None or iou is None:  # no sample head: which training view matches the input best
            view, iou = estimate_input_view(rec.verts, rec.faces, rec.prepared.image[3] > 0.5)
        size = rec.prepared.image.shape[-1]
        with one_thread():
            sil = render_views(rec.verts, rec.faces, [view], image_size=size, supersample=1)[0, 3] > 127
        stem = _safe_stem(name or Path(path).stem)
        out = self._answer_dir()
        files = {ext: out / f"{stem}.{ext}" for ext in ("glb", "obj", "ply")}
        save_glb(files["glb"], rec.verts, rec.faces, rec.colours)
        save_obj(files["obj"], rec.verts, rec.faces)
        save_ply(files["ply"], rec.verts, rec.faces, rec.colours)
        figure = out / f"{stem}_silhouette.png"
        atomic_write_bytes(figure, silhouette_png(rec.prepared.image, sil))
        seconds = time.perf_counter() - t0
        self.served += 1
        p = rec.prepared
        mask = "its alpha channel" if p.used_alpha else "segmentation from the background"
        colours = "vertex colours" if rec.colours is not None else "grey (this checkpoint predicts no colours)"
        summary = (f"Mask from {mask}; framing {p.framing}, the object fills {p.fill:.0%} of the frame. "
                   f"Best-matching training view {view} (azimuth {-cameras.AZIMUTH_STEP * view:.0f} deg, "
                   f"elevation {cameras.ELEVATION:.0f} deg): silhouette IoU {iou:.3f} against the input mask. "
                   f"Mesh: {len(rec.verts)} vertices, {colours}. {seconds:.2f} s.")
        return Answer(files["glb"], files["obj"], files["ply"], figure, view, iou, rec.verts, summary, seconds)


def _safe_stem(stem: str) -> str:
    """A file stem of letters, digits, ``-`` and ``_`` (others -> ``_``), at most 64 characters."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in stem)[:64]
    return safe or "image"
