"""Single-image inference: a user image -> a mesh (.obj) and a turntable PNG strip; for a checkpoint
trained with ``--colour`` also the mesh with its predicted vertex colours (.ply, .glb, see
``recon.report.mesh_export``) and a turntable in those colours.

Images are framed like the model's training images (``recon.data.image_io``); a picture not
already framed like them is framed by self-consistency (``recon.framing``: the candidate framing
whose predicted mesh's silhouette best matches the framed object). What that framing is comes
from the training data: the checkpoint's config names its dataset file (``data``), whose
camera (``recon.cameras``, stored as file attributes) set how much of the frame each object
fills. ``training_fills`` measures those fills on the file's train split; when the file is not
at that path (a checkpoint copied to another machine), the statistics measured once on the
embedded synthetic dataset are used: every dataset this project writes uses the same SoftRas
camera, so they differ only by how the objects' shapes differ.

The model's input size is the SoftRas 64 x 64 (``recon.cameras.IMAGE_SIZE``), the size
``recon.runs.load_model`` builds every model at; user images of any size are resampled to it.

Colours come from the checkpoint's colour head (``recon.models.colour_heads``). The ``latent`` head needs
only the image. The ``sample`` head projects the vertices into the input image and so needs its
camera, which a user image does not come with: it is one of the 24 training views, given
(``view``) or estimated (``estimate_input_view``: the view from which the predicted mesh's
silhouette best matches the image's mask).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import h5py
import numpy as np
import torch
from PIL import Image

from recon import cameras
from recon.cameras import IMAGE_SIZE
from recon.config import check_view
from recon.data.image_io import (EMBEDDED_FILLS, FillStats, Framing, ImageError, PreparedImage, frame_source,
                                 in_training_framing, load_source)
from recon.data.raster import render_views
from recon.data.schema import DatasetFormatError, validate
from recon.distributed import resolve_device
from recon.framing import FramingChoice, search_framing
from recon.io import atomic_write_bytes, check_output_file
from recon.mesh import save_obj
from recon.report.mesh_export import glb_bytes, ply_bytes
from recon.models.colour_heads import ImageSampleColourHead
from recon.models.precision import check_precision, inference_precision
from recon.render import Renderer, get_renderer
from recon.report import render_mesh_rgb
from recon.runs import load_model, resolve_checkpoint
from recon.runtime import flush_denormals, one_thread

__all__ = ["TURNTABLE_VIEWS", "FILL_SAMPLE_OBJECTS", "PredictOutput", "Reconstruction", "Predictor", "output_names",
           "training_fills", "turntable_png", "estimate_input_view", "check_view"]

TURNTABLE_VIEWS = (0, 3, 6, 9, 12, 15, 18, 21)  # every 45 degrees of azimuth, elevation 30
FILL_SAMPLE_OBJECTS = 16  # objects per category (all their views) measured by training_fills


@dataclass(frozen=True)
class PredictOutput:
    """What one image gave: the files written, the mesh (``verts (V, 3)``, CPU) and how the image
    was read (``used_alpha``) and framed (``framing``: as-is | centred | self-consistent, ``fill``
    of the frame, ``centre`` of the object's box in it; ``choice``: what the self-consistent search
    found, None for the other framings). A coloured checkpoint also gives ``colours (V, 3)`` sRGB in
    [0, 1] and the ``ply`` / ``glb`` files holding them (all three None otherwise); ``view`` is the
    input camera the ``sample`` head used (None for other heads), ``view_iou`` its silhouette match
    when it was estimated."""

    obj: Path
    turntable: Path
    verts: torch.Tensor
    used_alpha: bool
    framing: str
    fill: float
    colours: torch.Tensor | None = None
    ply: Path | None = None
    glb: Path | None = None
    view: int | None = None
    view_iou: float | None = None
    centre: tuple[float, float] = (0.0, 0.0)
    choice: FramingChoice | None = None


@dataclass(frozen=True)
class Reconstruction:
    """One image's reconstruction, before anything is written: the ``prepared`` input
    (``recon.data.image_io.PreparedImage``), the mesh ``verts (V, 3)`` / ``faces (F, 3)`` on the CPU,
    ``colours (V, 3)`` sRGB in [0, 1] for a coloured checkpoint (else None), and ``view`` as
    ``PredictOutput.view`` (``view_iou`` its silhouette match when it was estimated); ``choice``: the
    self-consistent framing's search (``recon.framing``), None when the image was framed by rule."""

    prepared: PreparedImage
    verts: torch.Tensor
    faces: torch.Tensor
    colours: torch.Tensor | None = None
    view: int | None = None
    view_iou: float | None = None
    choice: FramingChoice | None = None


def output_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """File stems for outputs, made unique (``cat``, ``cat-2``, ...) when two inputs share a stem."""
    seen: dict[str, int] = {}
    names = []
    for p in paths:
        stem = Path(p).stem or "image"
        n = seen.get(stem, 0) + 1
        seen[stem] = n
        names.append(stem if n == 1 else f"{stem}-{n}")
    return names


def training_fills(config: dict[str, Any]) -> FillStats:
    """Fill statistics of a checkpoint's training images (``FillStats.measure`` on all views of the
    first ``FILL_SAMPLE_OBJECTS`` train objects of each category of ``config["data"]``), or
    ``EMBEDDED_FILLS`` (its ``source`` saying why) when that file is missing or unusable."""
    data = config.get("data")
    if not isinstance(data, str) or not data:
        return replace(EMBEDDED_FILLS, source=f"{EMBEDDED_FILLS.source} (the checkpoint names no dataset)")
    if not os.path.isfile(data):
        return replace(EMBEDDED_FILLS, source=f"{EMBEDDED_FILLS.source} (the training data {data} is not here)")
    try:
        info = validate(data)
        with h5py.File(data, "r") as f:
            alphas = [f[key]["train"]["images"][:FILL_SAMPLE_OBJECTS, :, 3] for key in info.categories
                      if "train" in f[key]]
        if not alphas:
            raise DatasetFormatError(f"{data}: no train split")
        stack = np.concatenate([a.reshape(-1, info.image_size, info.image_size) for a in alphas])
        return FillStats.measure(stack, source=f"{data} (train split)")
    except (DatasetFormatError, OSError, KeyError, ValueError) as e:
        return replace(EMBEDDED_FILLS, source=f"{EMBEDDED_FILLS.source} (the training data is unusable: {e})")


def _tile(img: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3|4) uint8 -> (size, size, 3) on white, aspect kept, centred."""
    im = Image.fromarray(img)
    if im.mode == "RGBA":
        bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(bg, im)
    im = im.convert("RGB")
    scale = size / max(im.size)
    # Large photos are reduced smoothly; small inputs (the 64 px model input) enlarged without smoothing.
    resample = Image.LANCZOS if scale < 1 else Image.NEAREST
    im = im.resize((max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))), resample)
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(im, ((size - im.size[0]) // 2, (size - im.size[1]) // 2))
    return np.asarray(canvas)


def turntable_png(original: np.ndarray, model_input: torch.Tensor, verts: torch.Tensor, faces: torch.Tensor,
                  views: Sequence[int] = TURNTABLE_VIEWS, size: int = 128,
                  colours: torch.Tensor | None = None) -> bytes:
    """One PNG row: the original image, the framed model input, the mesh rendered at ``views``
    (grey, or in its vertex ``colours``: ``recon.report.render_mesh_rgb``).

    Args:
        original: (H, W, 4) uint8 RGBA as read. model_input: (4, S, S) premultiplied RGBA in [0, 1].
        verts: (V, 3); faces: (F, 3); colours: (V, 3) sRGB in [0, 1] or None.
    """
    a = model_input[3:4].clamp(0, 1)
    on_white = (model_input[:3] + (1 - a)).clamp(0, 1)  # premultiplied RGB over white
    inp = (on_white.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    renders = render_mesh_rgb(verts, faces, views, image_size=size, colours=colours)
    tiles = [_tile(original, size), _tile(inp, size)] + list(renders)
    strip = np.concatenate(tiles, axis=1)
    buf = io.BytesIO()
    Image.fromarray(strip).save(buf, format="PNG")
    return buf.getvalue()


@torch.no_grad()
def estimate_input_view(verts: torch.Tensor, faces: torch.Tensor, mask: torch.Tensor) -> tuple[int, float]:
    """The training view whose camera makes the mesh's silhouette match ``mask`` best.

    Args:
        verts: (V, 3) the predicted mesh. faces: (F, 3).
        mask: (S, S) bool object mask of the model input.
    Returns:
        (view index, its mask IoU); the first of equal views.
    """
    with one_thread():  # one small mesh: more threads only add contention
        alpha = render_views(verts.cpu(), faces.cpu(), range(cameras.NUM_VIEWS), image_size=mask.shape[-1],
                             supersample=1)[:, 3]
    sil = torch.from_numpy(alpha > 127)  # (24, S, S)
    m = mask.cpu()[None]
    union = (sil | m).sum((1, 2))
    iou = torch.where(union > 0, (sil & m).sum((1, 2)) / union.clamp_min(1), torch.zeros(()))
    best = int(iou.argmax())
    return best, float(iou[best])


class Predictor:
    """A reconstructor in eval mode and the framing of its training images.

    Args:
        model: ``forward((B, 4, S, S)) -> (B, V, 3)`` with ``faces (F, 3)``.
        fills: the training images' fills (``training_fills``).
        image_size: the model's input size S.
    """

    def __init__(self, model: torch.nn.Module, fills: FillStats = EMBEDDED_FILLS, device: torch.device | str = "cpu",
                 image_size: int = IMAGE_SIZE, description: str = ""):
        self.model = model
        self.fills = fills
        self.device = torch.device(device)
        self.image_size = image_size
        self.description = description
        self._renderer: Renderer | None = None

    @property
    def renderer(self) -> Renderer:
        """The soft rasterizer (training settings, the model's input size) the framing search renders
        silhouettes with; built on first use."""
        if self._renderer is None:
            self._renderer = get_renderer("softras", image_size=self.image_size, device=str(self.device))
        return self._renderer

    @classmethod
    def load(cls, checkpoint: str | os.PathLike, device: str = "auto", precision: str = "auto") -> "Predictor":
        """From a checkpoint file or run directory (``best.pt``), a ``--device`` spec and a
        ``--precision`` (``recon.models.precision.inference_precision``).

        Raises:
            CheckpointError: no usable checkpoint; ValueError: bad device or precision.
        """
        check_precision(precision)
        flush_denormals()  # as training and evaluation (recon.runtime)
        dev = resolve_device(device)
        path = resolve_checkpoint(checkpoint)
        model, state = load_model(path, dev)
        choice = inference_precision(precision, state.get("precision"), dev)
        model.set_precision(choice.precision)
        fills = training_fills(state["config"])
        head = getattr(model, "colour", None) if getattr(model, "colour_head", None) is not None else None
        colour = f", colour head {head}" if head else ""
        description = (f"{path} (encoder={state['config'].get('encoder')}{colour}, step {state['step']}, precision "
                       f"{choice.precision}); framing: "
                       f"training objects fill {fills.low:.0%}-{fills.high:.0%} of the frame "
                       f"(median {fills.median:.0%}, extremes {fills.lowest:.0%}-{fills.highest:.0%}; "
                       f"measured on {fills.source})")
        return cls(model, fills, dev, IMAGE_SIZE, description)

    @property
    def coloured(self) -> bool:
        """Whether the model predicts vertex colours (it has a colour head)."""
        return getattr(self.model, "colour_head", None) is not None

    @property
    def needs_view(self) -> bool:
        """Whether the colour head needs the input image's camera (the ``sample`` head)."""
        return isinstance(getattr(self.model, "colour_head", None), ImageSampleColourHead)

    def output_paths(self, out_dir: str | os.PathLike, name: str) -> list[Path]:
        """Every file ``predict_file`` writes for ``name``, each checked (``check_output_file``: absent or
        a regular file) so that a special file at any of them refuses the image before anything is
        written. Raises OutputPathError (a ValueError) naming the path."""
        out = Path(out_dir)
        paths = [out / f"{name}.obj", out / f"{name}_turntable.png"]
        if self.coloured:
            paths += [out / f"{name}.ply", out / f"{name}.glb"]
        for path in paths:
            check_output_file(path)
        return paths

    @torch.no_grad()
    def reconstruct(self, path: str | os.PathLike, framing: Framing = Framing(),
                    view: int | None = None) -> Reconstruction:
        """Reconstruct the object in one image file, writing nothing: what ``predict_file`` writes
        (and ``pipelines.app`` shows) comes from here. ``auto`` framing: an image already framed like
        the training images (``in_training_framing``) is used as is, any other is framed by
        self-consistency (``recon.framing.search_framing``). ``view``: the input's training view for
        the ``sample`` head (None: estimated).

        Raises:
            ImageError: the file cannot be used (missing, not an image, no object).
            ValueError: ``view`` outside [0, 24).
        """
        check_view(view)
        source = load_source(path)
        choice = None
        if framing.mode == "auto" and not in_training_framing(source, self.fills, self.image_size):
            prepared, verts, choice = search_framing(self.model, self.renderer, source, self.fills, self.image_size,
                                                     self.device)
        else:
            prepared = frame_source(source, self.image_size, framing, self.fills)
            verts = self.model(prepared.image[None].to(self.device))[0].cpu()
        image = prepared.image[None].to(self.device)
        faces = self.model.faces.cpu()
        colours, view_iou = None, None
        if self.coloured:
            azimuth = None
            if self.needs_view:
                if view is None:
                    view, view_iou = estimate_input_view(verts, faces, prepared.image[3] > 0.5)
                azimuth = cameras.view_azimuths(view).to(self.device)
            else:
                view = None
            colours = self.model(image, azimuth=azimuth, with_colours=True)[1][0].float().cpu()
        return Reconstruction(prepared, verts, faces, colours, view, view_iou, choice)

    def predict_file(self, path: str | os.PathLike, out_dir: str | os.PathLike, name: str,
                     framing: Framing = Framing(), view: int | None = None) -> PredictOutput:
        """Reconstruct the object in one image file (``reconstruct``); write ``out_dir/name.obj`` and
        ``out_dir/name_turntable.png``, and for a coloured model ``name.ply`` and ``name.glb`` with the
        predicted vertex colours (the turntable then in colour); all atomically, and only once all are
        computed. ``view``: the input's training view for the ``sample`` head (None: estimated).

        Raises:
            ImageError: the file cannot be used (missing, not an image, no object).
            OSError: the outputs cannot be written.
            ValueError: ``view`` outside [0, 24).
        """
        self.output_paths(out_dir, name)
        rec = self.reconstruct(path, framing, view)
        prepared, verts, faces, colours = rec.prepared, rec.verts, rec.faces, rec.colours
        png = turntable_png(prepared.original, prepared.image, verts, faces, colours=colours)
        out = Path(out_dir)
        obj_path, png_path = out / f"{name}.obj", out / f"{name}_turntable.png"
        files = {png_path: png}
        ply_path = glb_path = None
        if colours is not None:
            ply_path, glb_path = out / f"{name}.ply", out / f"{name}.glb"
            files[ply_path] = ply_bytes(verts, faces, colours, where=ply_path)
            files[glb_path] = glb_bytes(verts, faces, colours, name=name, where=glb_path)
        save_obj(obj_path, verts, faces)
        for file, data in files.items():
            atomic_write_bytes(file, data)
        return PredictOutput(obj_path, png_path, verts, prepared.used_alpha, prepared.framing, prepared.fill,
                             colours, ply_path, glb_path, rec.view, rec.view_iou, prepared.centre, rec.choice)

    def predict_files(self, paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                      framing: Framing = Framing(), view: int | None = None
                      ) -> Iterator[tuple[str | os.PathLike, PredictOutput | ImageError]]:
        """``predict_file`` for each path (outputs named by ``output_names``), yielding
        ``(path, output)`` or ``(path, ImageError)`` for a file that cannot be used; an ``OSError``
        writing outputs ends the iteration (raised). Every output path of every image is checked
        before the first image is read: a special file (a FIFO, a device) at any of them raises
        ``OutputPathError`` with nothing written."""
        check_view(view)
        names = output_names(paths)
        for name in names:
            self.output_paths(out_dir, name)
        for path, name in zip(paths, names):
            try:
                yield path, self.predict_file(path, out_dir, name, framing, view)
            except ImageError as e:
                yield path, e
