"""User images -> model inputs: load PNG/JPEG, find the object, frame it like the training images.

A model input is laid out as the dataset images (``recon.data.raster``): ``(4, S, S)`` float32 in
``[0, 1]``, RGB premultiplied by alpha (background black), alpha = pixel coverage, every value on
the 8-bit grid (``k / 255``) because the dataset stores uint8. An image exported from a dataset
with ``dataset_image_to_rgba`` (straight alpha, as PNG requires) therefore comes back as exactly
the tensor the model was evaluated on, so predict gives eval's mesh for it.

Reading (``load_rgba``): anything Pillow reads; the EXIF orientation is applied (phone JPEGs store
the pixels sideways); 16-bit grayscale (Pillow modes ``I;16*`` and ``I``) is scaled to 8 bits
(``/ 257``, so 65535 -> 255), its PNG ``tRNS`` transparent value becoming alpha 0.

Object mask:

* an alpha channel with some transparency is used as is (soft edges kept);
* otherwise the object is segmented from a plain background: the background colour is the
  median of the border pixels, each pixel's Euclidean RGB distance to it is thresholded by
  Otsu's method (never below ``MIN_CONTRAST``), then only the largest 4-connected
  component is kept and its holes are filled. numpy only (no scipy / OpenCV).

Framing: where the object sits in the ``S x S`` frame and how much of it it *fills* (the longer
side of its alpha bounding box over the frame side). Training images are framed by their camera
(``recon.cameras``: objects normalised into the unit cube, seen from distance 2.732 with a 15
degree viewing angle), so the fill depends on the object and the view: on the embedded synthetic
dataset (train split, 40 objects x 24 views per category) its 5th percentile is 50 %, median 69 %
and 95th percentile 84 % (chairs: median 78 %, airplanes 61 %). ``FillStats`` holds these three
numbers; ``recon.workflows.predict`` measures them on the checkpoint's own dataset when it can.

* ``as-is``: the image *is* the camera frame. It is padded to a square (centred, transparent) and
  resampled to ``S x S`` by area averaging; nothing is cropped or moved. For renders made with the
  training camera, such as images exported from the dataset, at any resolution.
* ``fill``: the object's bounding box is centred and its longer side spans ``fill`` of the frame
  (default: the training median).
* ``auto`` (default): ``as-is`` for an image ``in_training_framing``: square, with transparency
  (the signature of a render), its object's fill and centre within the extremes the training
  images show. Any other image (a photo, a cut-out placed anywhere) is framed by
  self-consistency with the model (``recon.framing``, called by ``recon.workflows.predict``); without a
  model (``prepare_image``) it is centred and keeps its own fill (its longer side over the
  image's longer side) clamped into ``[FillStats.low, FillStats.high]``, the rule ``auto``
  followed before the search.

The object's *centre* in a frame is its bounding box's centre minus the frame's, over the frame
side (``object_centres``); training objects sit within a couple of pixels of the middle
(embedded dataset: x in [-3 %, +3 %], y in [-2 %, +6 %], 5th-95th percentiles; y is down).
"""

from __future__ import annotations

import os
import stat
import struct
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from recon.choices import FRAMINGS
from recon.errors import ConfigError, InputError

__all__ = ["ImageError", "FRAMINGS", "MIN_CONTRAST", "FillStats", "EMBEDDED_FILLS", "Framing", "PreparedImage",
           "load_rgba", "segment_foreground", "largest_component", "fill_holes", "object_fills", "object_centres",
           "object_box", "box_at", "placement", "frame_box", "render_input", "SourceImage", "load_source",
           "in_training_framing", "prepare_image", "frame_source", "dataset_image_to_rgba", "FILL_RANGE",
           "MAX_IMAGE_PIXELS"]

MIN_CONTRAST = 24.0  # RGB distance (0..441) below which a pixel always counts as background
_WORK_SIZE = 512     # images are reduced to at most this (longer side) before segmentation and framing
_WIDE_GRAY = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16-bit (or 32-bit int) grayscale modes
# --fill: below 0.1 the object spans fewer than 7 of the 64 input pixels (training objects fill 50-84 %),
# and the padded frame, which grows as 1/fill^2, would need gigabytes (1e-6 asked for petabytes)
FILL_RANGE = (0.1, 1.0)
# images with more pixels are refused unread (decoding one takes ~24 bytes per pixel: 1.5 GB at this limit);
# 64 megapixels covers 8000x8000 and the 48-50 MP phone cameras
MAX_IMAGE_PIXELS = 64_000_000


# The rest of FillStats as measured on that dataset (see EMBEDDED_FILLS): fill extremes; centre
# 5th / 95th percentiles and extremes, (x, y) in frame fractions.
_EMBEDDED_EXTREMES = (0.34, 0.98)
_EMBEDDED_CENTRES = ((-0.031, -0.016), (0.031, 0.062), (-0.086, -0.070), (0.070, 0.109))


class ImageError(InputError):
    """An input image cannot be used; the message says why (without the file name)."""


@dataclass(frozen=True)
class FillStats:
    """How the objects of the training images are framed: their *fill* (longer side of the alpha
    bounding box over the frame side: 5th percentile, median, 95th percentile, and the extremes
    ``lowest`` / ``highest``) and their *centre* (the bounding box's centre minus the frame's, over
    the frame side, ``(x, y)`` with y down: 5th / 95th percentiles and extremes per axis), and where
    the numbers come from. The self-consistent framing search (``recon.framing``) tries fills
    between the extremes and centres between the percentiles; the extremes also say which images
    are already framed like training (``in_training_framing``)."""

    low: float
    median: float
    high: float
    source: str
    lowest: float = _EMBEDDED_EXTREMES[0]
    highest: float = _EMBEDDED_EXTREMES[1]
    centre_low: tuple[float, float] = _EMBEDDED_CENTRES[0]
    centre_high: tuple[float, float] = _EMBEDDED_CENTRES[1]
    centre_lowest: tuple[float, float] = _EMBEDDED_CENTRES[2]
    centre_highest: tuple[float, float] = _EMBEDDED_CENTRES[3]

    @classmethod
    def measure(cls, alpha: np.ndarray, source: str) -> "FillStats":
        """Statistics of a stack of training images' alpha, ``(N, S, S)`` (> 0 = object).

        Raises:
            ValueError: no image shows an object.
        """
        fills = object_fills(alpha)
        shown = fills > 0
        fills = fills[shown]
        if fills.size == 0:
            raise InputError(f"{source}: no training image shows an object")
        centres = object_centres(alpha)[shown]
        low, median, high = np.percentile(fills, [5, 50, 95])
        c_low, c_high = np.percentile(centres, [5, 95], axis=0)
        c_min, c_max = centres.min(0), centres.max(0)

        def pair(v: np.ndarray) -> tuple[float, float]:
            return float(v[0]), float(v[1])

        return cls(float(low), float(median), float(high), source, float(fills.min()), float(fills.max()),
                   pair(c_low), pair(c_high), pair(c_min), pair(c_max))


# Measured with FillStats.measure on the train split of `pipelines.convert synthetic --per-category 40`
# (6 categories x 40 objects x 24 views = 5760 images, SoftRas camera): see the module docstring.
EMBEDDED_FILLS = FillStats(0.50, 0.69, 0.84, "the embedded synthetic dataset")


@dataclass(frozen=True)
class Framing:
    """How to frame user images: ``mode`` in ``FRAMINGS``; ``fill`` (only with ``mode="fill"``) the
    fraction of the frame the object's longer side spans, None for the training median.

    Raises:
        ValueError: unknown mode, ``fill`` outside ``(0, 1]`` or given with another mode.
    """

    mode: str = "auto"
    fill: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in FRAMINGS:
            raise ConfigError(f"--framing {self.mode!r}: expected one of {', '.join(FRAMINGS)}")
        if self.fill is not None:
            if self.mode != "fill":
                raise ConfigError(f"--fill applies to --framing fill only, not --framing {self.mode}")
            if not FILL_RANGE[0] <= self.fill <= FILL_RANGE[1]:
                raise ConfigError(f"--fill {self.fill}: expected a fraction of the frame in [{FILL_RANGE[0]:g}, "
                                  f"{FILL_RANGE[1]:g}] (the object's longer side over the frame's; training objects "
                                  f"fill {EMBEDDED_FILLS.low:g}-{EMBEDDED_FILLS.high:g})")

    @classmethod
    def from_flags(cls, mode: str | None, fill: float | None) -> "Framing":
        """``--framing`` / ``--fill``: a ``--fill`` alone means ``--framing fill``."""
        return cls(mode if mode is not None else ("fill" if fill is not None else "auto"), fill)


@dataclass(frozen=True)
class PreparedImage:
    """``image``: (4, S, S) float32 model input; ``mask``: (H, W) bool foreground of ``original``;
    ``used_alpha``: whether the file's alpha gave the mask; ``original``: (H, W, 4) uint8 as read
    (upright, reduced to at most 512 px); ``framing``: ``"as-is"``, ``"centred"`` or
    ``"self-consistent"`` (``recon.framing``); ``fill``: the object's fill of the model input's
    frame; ``centre``: its bounding box's centre in that frame (``object_centres``)."""

    image: torch.Tensor
    mask: np.ndarray
    used_alpha: bool
    original: np.ndarray
    framing: str
    fill: float
    centre: tuple[float, float] = (0.0, 0.0)


def _upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation (a corrupt EXIF block leaves the image as stored)."""
    try:
        return ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError, TypeError, KeyError, struct.error):
        return im


def _to_rgba8(im: Image.Image) -> tuple[np.ndarray, bool]:
    """A loaded PIL image -> ((H, W, 4) uint8 RGBA, whether it carries transparency information)."""
    if im.mode in _WIDE_GRAY:  # Pillow's convert would clip these to 255 (all white)
        wide = np.asarray(im).astype(np.int64)
        gray = ((np.clip(wide, 0, 65535) + 128) // 257).astype(np.uint8)  # round(v / 257)
        alpha = np.full(wide.shape, 255, np.uint8)
        key = im.info.get("transparency")
        has_alpha = isinstance(key, int)
        if has_alpha:
            alpha[wide == key] = 0
        return np.stack([gray, gray, gray, alpha], axis=-1), has_alpha
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    return np.asarray(im.convert("RGBA"), dtype=np.uint8).copy(), has_alpha


def load_rgba(path: str | os.PathLike) -> tuple[np.ndarray, bool]:
    """Read an image file upright as (H, W, 4) uint8 RGBA and whether it carried transparency.

    Raises:
        ImageError: missing file, directory or other non-regular file (a FIFO or device is refused
            before it is opened: reading one could block for ever), not a readable image, or more
            than ``MAX_IMAGE_PIXELS`` pixels (refused before decoding).
    """
    p = Path(path)
    if not p.exists():
        raise ImageError("no such file")
    if p.is_dir():
        raise ImageError("is a directory, expected a PNG or JPEG image")
    mode = p.stat().st_mode
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else \
            "a socket" if stat.S_ISSOCK(mode) else "not a regular file"
        raise ImageError(f"is {kind}, expected a PNG or JPEG image file")
    try:
        with warnings.catch_warnings():  # Pillow's DecompressionBombWarning: our own limit below says it in one line
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(p)
        with im:
            w, h = im.size
            if w * h > MAX_IMAGE_PIXELS:
                raise ImageError(f"image is too large: {w}x{h} = {w * h:,} pixels, more than the limit of "
                                 f"{MAX_IMAGE_PIXELS:,} (reduce it first)")
            im.load()
            rgba, has_alpha = _to_rgba8(_upright(im))
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image (expected PNG or JPEG)") from None
    except Image.DecompressionBombError as e:  # a header declaring billions of pixels
        raise ImageError(f"image is too large: {e}") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"unreadable image: {e}") from None
    if rgba.shape[0] < 4 or rgba.shape[1] < 4:
        raise ImageError(f"image is too small ({rgba.shape[1]}x{rgba.shape[0]} pixels)")
    return rgba, has_alpha


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu threshold of a 1-D sample (maximises the between-class variance)."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist).astype(np.float64)
    w1 = w0[-1] - w0
    s0 = np.cumsum(hist * centres)
    m0 = s0 / np.maximum(w0, 1)
    m1 = (s0[-1] - s0) / np.maximum(w1, 1)
    between = w0 * w1 * (m0 - m1) ** 2
    return float(edges[int(np.argmax(between)) + 1])


def _labels(mask: np.ndarray) -> np.ndarray:
    """4-connected component labels of ``mask`` (each pixel -> the smallest flat index of its
    component; -1 off the mask): min-propagation between neighbours with pointer jumping."""
    h, w = mask.shape
    big = h * w
    lab = np.where(mask, np.arange(big).reshape(h, w), big)
    while True:
        new = lab.copy()
        np.minimum(new[1:], lab[:-1], out=new[1:])
        np.minimum(new[:-1], lab[1:], out=new[:-1])
        np.minimum(new[:, 1:], lab[:, :-1], out=new[:, 1:])
        np.minimum(new[:, :-1], lab[:, 1:], out=new[:, :-1])
        new = np.where(mask, new, big)
        flat = np.append(new.ravel(), big)
        for _ in range(4):  # pointer jumping: a pixel adopts the label of its label's pixel
            flat[:-1] = flat[flat[:-1]]
        new = flat[:-1].reshape(h, w)
        if np.array_equal(new, lab):
            return np.where(mask, lab, -1)
        lab = new


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 4-connected component of a (H, W) bool mask (all False if empty)."""
    if not mask.any():
        return mask.copy()
    lab = _labels(mask)
    ids, counts = np.unique(lab[mask], return_counts=True)
    return lab == ids[np.argmax(counts)]


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions of a (H, W) bool mask that do not touch the image border."""
    padded = np.pad(~mask, 1, constant_values=True)
    lab = _labels(padded)
    outside = lab == lab[0, 0]
    return ~outside[1:-1, 1:-1]


def segment_foreground(rgb: np.ndarray, border: int = 2) -> np.ndarray:
    """Foreground mask of an object on a plain background.

    Args:
        rgb: (H, W, 3) uint8.
        border: width in pixels of the frame used to estimate the background colour.
    Returns:
        (H, W) bool mask: largest connected component, holes filled.
    Raises:
        ImageError: when nothing stands out from the background.
    """
    x = rgb.astype(np.float32)
    edge = np.concatenate([x[:border].reshape(-1, 3), x[-border:].reshape(-1, 3),
                           x[:, :border].reshape(-1, 3), x[:, -border:].reshape(-1, 3)])
    background = np.median(edge, axis=0)
    dist = np.sqrt(((x - background) ** 2).sum(-1))
    if dist.max() < MIN_CONTRAST:
        raise ImageError("no object found: the image is a plain colour")
    thresh = max(_otsu(dist.ravel()), MIN_CONTRAST)
    mask = fill_holes(largest_component(dist > thresh))
    if mask.sum() < 16:
        raise ImageError("no object found: too few pixels differ from the background")
    return mask


def object_fills(alpha: np.ndarray) -> np.ndarray:
    """Fill of each image of a stack: the longer side of the bounding box of ``alpha > 0`` over the
    image's longer side (0 for an empty image).

    Args:
        alpha: (N, H, W) or (H, W), any numeric dtype.
    Returns:
        (N,) float64 (a 0-d array for one image).
    """
    a = np.asarray(alpha) > 0
    h, w = a.shape[-2:]

    def extent(occupied: np.ndarray) -> np.ndarray:  # (..., L) bool -> (...) covered span length
        idx = np.arange(occupied.shape[-1])
        last = np.where(occupied, idx, -1).max(-1)
        first = np.where(occupied, idx, occupied.shape[-1]).min(-1)
        return np.maximum(last - first + 1, 0)

    return np.maximum(extent(a.any(-1)), extent(a.any(-2))) / max(h, w)


def object_centres(alpha: np.ndarray) -> np.ndarray:
    """Centre of each image's object: the centre of the bounding box of ``alpha > 0`` minus the
    image's centre, over the image's longer side, ``(x, y)`` with y down (0 for an empty image).

    Args:
        alpha: (N, H, W) or (H, W), any numeric dtype.
    Returns:
        (N, 2) float64 (a (2,) array for one image).
    """
    a = np.asarray(alpha) > 0
    h, w = a.shape[-2:]

    def mid(occupied: np.ndarray, length: int) -> np.ndarray:  # (..., L) bool -> (...) span centre - L/2
        idx = np.arange(length)
        first = np.where(occupied, idx, length).min(-1)
        last = np.where(occupied, idx, -1).max(-1)
        return np.where(occupied.any(-1), (first + last + 1) / 2 - length / 2, 0.0)

    return np.stack([mid(a.any(-2), w), mid(a.any(-1), h)], axis=-1) / max(h, w)


def object_box(alpha: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` (x1, y1 exclusive) bounding box of ``alpha > 0`` in a (H, W) image.

    Raises:
        ImageError: ``alpha`` is empty.
    """
    ys, xs = np.nonzero(alpha > 0)
    if len(ys) == 0:
        raise ImageError("no object found: the alpha channel is empty")
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def box_at(obj: tuple[int, int, int, int], fill: float, centre: tuple[float, float]
           ) -> tuple[float, float, float, float]:
    """The square frame (source pixels) in which the object's bounding box ``obj`` spans ``fill`` of
    the side and has its centre at ``centre`` (frame fractions from the frame's centre, y down)."""
    x0, y0, x1, y1 = obj
    side = max(x1 - x0, y1 - y0) / fill
    cx, cy = (x0 + x1) / 2 - centre[0] * side, (y0 + y1) / 2 - centre[1] * side
    return cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2


def placement(obj: tuple[int, int, int, int], box: tuple[float, float, float, float]
              ) -> tuple[float, tuple[float, float]]:
    """How the object's bounding box ``obj`` sits in the square frame ``box``: ``(fill, centre)``
    as in ``box_at`` (its inverse)."""
    x0, y0, x1, y1 = obj
    side = box[2] - box[0]
    return (max(x1 - x0, y1 - y0) / side,
            (((x0 + x1) / 2 - (box[0] + box[2]) / 2) / side, ((y0 + y1) / 2 - (box[1] + box[3]) / 2) / side))


def frame_box(alpha: np.ndarray, mode: str, fill: float | None = None,
              fills: FillStats = EMBEDDED_FILLS) -> tuple[tuple[float, float, float, float], float]:
    """The square crop (in source pixels, may extend past the image) that becomes the model's frame.

    Args:
        alpha: (H, W) float coverage (> 0 = object).
        mode: ``"as-is"`` (the whole image, padded to a square), ``"fill"`` (object centred,
            spanning ``fill``, default ``fills.median``) or ``"own"`` (object centred, keeping its
            fill of the image clamped into ``[fills.low, fills.high]``).
    Returns:
        ``((x0, y0, x1, y1), object fill of that frame)``.
    Raises:
        ImageError: ``alpha`` is empty.
    """
    ys, xs = np.nonzero(alpha > 0)
    if len(ys) == 0:
        raise ImageError("no object found: the alpha channel is empty")
    h, w = alpha.shape
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    extent = float(max(y1 - y0, x1 - x0))
    if mode == "as-is":
        side, cx, cy = float(max(h, w)), w / 2, h / 2
    elif mode in ("fill", "own"):
        if mode == "fill":
            target = fills.median if fill is None else fill
        else:
            target = float(np.clip(extent / max(h, w), fills.low, fills.high))
        side, cx, cy = extent / target, (x0 + x1) / 2, (y0 + y1) / 2
    else:
        raise ValueError(f"unknown framing mode {mode!r}")
    return (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2), extent / side


def render_input(rgb: np.ndarray, alpha: np.ndarray, box: tuple[float, float, float, float],
                 size: int) -> torch.Tensor:
    """Premultiply, crop ``box`` (outside the image: transparent black), area-resample to
    ``size x size`` and round to the 8-bit grid like the stored dataset images.

    Args:
        rgb: (H, W, 3) float in [0, 1], straight (not premultiplied); alpha: (H, W) float in [0, 1].
    Returns:
        (4, size, size) float32: premultiplied RGB (black background) and alpha.
    """
    premult = np.concatenate([rgb * alpha[..., None], alpha[..., None]], axis=-1).astype(np.float32)
    h, w = alpha.shape
    pad = int(np.ceil(max(0.0, -box[0], -box[1], box[2] - w, box[3] - h))) + 1
    shifted = tuple(v + pad for v in box)
    out = []
    for c in range(4):
        im = Image.fromarray(np.pad(premult[..., c], pad), "F")
        out.append(np.asarray(im.resize((size, size), Image.BOX, box=shifted)))
    quantised = np.round(np.clip(np.stack(out), 0, 1) * 255) / 255
    return torch.from_numpy(quantised.astype(np.float32))


def _fit(rgba: np.ndarray, max_side: int) -> np.ndarray:
    """Reduce (H, W, 4) uint8 so that its longer side is at most ``max_side`` (Pillow resamples RGBA
    premultiplied)."""
    h, w = rgba.shape[:2]
    if max(h, w) <= max_side:
        return rgba
    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(rgba, "RGBA").resize(size, Image.BOX))


@dataclass(frozen=True)
class SourceImage:
    """An image file read for framing (``load_source``).

    ``rgb``: (H, W, 3) float32 straight colour in [0, 1]; ``alpha``: (H, W) float32 object coverage
    (the file's alpha, or the segmented mask as 0/1); ``mask``: (H, W) bool foreground;
    ``used_alpha``: whether the file's alpha gave the mask; ``original``: (H, W, 4) uint8 as read
    (upright, reduced to at most 512 px); ``square``: whether the file's image is square."""

    rgb: np.ndarray
    alpha: np.ndarray
    mask: np.ndarray
    used_alpha: bool
    original: np.ndarray
    square: bool

    @cached_property
    def object(self) -> tuple[int, int, int, int]:
        """The object's bounding box ``(x0, y0, x1, y1)`` (``object_box`` of ``alpha``)."""
        return object_box(self.alpha)

    def framed(self, box: tuple[float, float, float, float], size: int, framing: str) -> PreparedImage:
        """The model input of frame ``box`` (``render_input``), labelled ``framing``."""
        fill, centre = placement(self.object, box)
        return PreparedImage(render_input(self.rgb, self.alpha, box, size), self.mask, self.used_alpha, self.original,
                             framing, fill, centre)


def load_source(path: str | os.PathLike) -> SourceImage:
    """Load an image file and find its object (see the module docstring).

    Raises:
        ImageError: the file is missing, not an image, or no object can be found.
    """
    rgba, has_alpha = load_rgba(path)
    square = rgba.shape[0] == rgba.shape[1]
    rgba = _fit(rgba, _WORK_SIZE)
    rgb = rgba[..., :3].astype(np.float32) / 255
    alpha = rgba[..., 3].astype(np.float32) / 255
    used_alpha = has_alpha and bool((alpha < 0.5).any())  # an all-opaque alpha carries no mask
    if used_alpha:
        mask = alpha >= 0.5
    else:
        mask = segment_foreground(rgba[..., :3])
        alpha = mask.astype(np.float32)
    object_box(alpha)  # an alpha channel with nothing above 0 is refused here
    return SourceImage(rgb, alpha, mask, used_alpha, rgba, square)


def in_training_framing(source: SourceImage, fills: FillStats = EMBEDDED_FILLS, size: int = 64) -> bool:
    """Whether the image is a render framed like the training images: square, with transparency, its
    object's fill and centre within the extremes the training images show (plus one model pixel,
    ``1 / size``, for the rounding of a resampled render)."""
    if not (source.square and source.used_alpha):
        return False
    tol = 1.0 / size
    fill = float(object_fills(source.alpha))
    cx, cy = object_centres(source.alpha)
    return (fills.lowest - tol <= fill <= fills.highest + tol
            and fills.centre_lowest[0] - tol <= cx <= fills.centre_highest[0] + tol
            and fills.centre_lowest[1] - tol <= cy <= fills.centre_highest[1] + tol)


def prepare_image(path: str | os.PathLike, size: int = 64, framing: Framing = Framing(),
                  fills: FillStats = EMBEDDED_FILLS) -> PreparedImage:
    """Load, segment and frame one image file without a model (see the module docstring): ``auto``
    is ``as-is`` for an image ``in_training_framing``, else the object centred at its own fill
    clamped into ``[fills.low, fills.high]`` (what ``recon.workflows.predict`` replaces by the self-consistent
    search, ``recon.framing``, when it has the model).

    Args:
        size: the model's input resolution S.
        framing: how to frame it; ``fills``: the training images' framing (``auto`` and ``fill``).
    Raises:
        ImageError: the file is missing, not an image, or no object can be found.
    """
    return frame_source(load_source(path), size, framing, fills)


def frame_source(source: SourceImage, size: int = 64, framing: Framing = Framing(),
                 fills: FillStats = EMBEDDED_FILLS) -> PreparedImage:
    """``prepare_image`` of an image already loaded."""
    mode = framing.mode
    if mode == "auto":
        mode = "as-is" if in_training_framing(source, fills, size) else "own"
    box, _ = frame_box(source.alpha, mode, framing.fill, fills)
    return source.framed(box, size, "as-is" if mode == "as-is" else "centred")


def dataset_image_to_rgba(image: np.ndarray) -> np.ndarray:
    """A stored dataset image -> straight-alpha RGBA for a PNG file (the inverse of the model input).

    Straight colour ``c = round(255 p / a)`` (``p``: premultiplied, ``a``: alpha, both uint8; 0 where
    ``a = 0``). Reading it back premultiplies ``c a / 255 = p + e a / 255`` with ``|e| <= 1/2`` and
    ``e = 0`` when ``a = 255``, so rounding gives back exactly ``p`` (whenever ``p <= a``, true of
    coverage-weighted colours in [0, 1]).

    Args:
        image: (4, S, S) uint8, RGB premultiplied, as in ``/<category>/<split>/images``.
    Returns:
        (S, S, 4) uint8.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[0] != 4 or image.dtype != np.uint8:
        raise ValueError(f"expected a (4, S, S) uint8 dataset image, got {image.shape} {image.dtype}")
    p, a = image[:3].astype(np.float64), image[3].astype(np.float64)
    straight = np.where(a > 0, np.round(255 * p / np.maximum(a, 1)), 0)
    return np.concatenate([np.clip(straight, 0, 255), a[None]]).transpose(1, 2, 0).astype(np.uint8)
