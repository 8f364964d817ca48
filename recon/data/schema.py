"""HDF5 dataset format, version 1: an atomic writer and the validator every reader uses.

Layout::

    file attrs: format="recon-hdf5", version=1, image_size, num_views,
                elevation, distance, viewing_angle, azimuth_step
    /<category>/                     attrs: name, source
    /<category>/<split>/images       uint8 (N, 24, 4, S, S)   RGBA, alpha = coverage * 255
    /<category>/<split>/voxels       uint8 or bool (N, 32, 32, 32)
    /<category>/<split>/object_ids   variable-length str (N,)

Voxel axis order (ours, documented once): ``voxels[i, j, k]`` is the cell whose centre is
``(-0.5 + (i + 0.5) / R, -0.5 + (j + 0.5) / R, -0.5 + (k + 0.5) / R)`` in world ``(x, y, z)``
(the frame the cameras in ``recon.cameras`` look at). Images are chunked one view of one
object at a time so random view access decompresses 16 KB, not the whole object.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from recon import cameras
from recon.io import atomic_path
from recon.signals import check, graceful_stop

__all__ = [
    "FORMAT",
    "VERSION",
    "SPLITS",
    "VOXEL_RES",
    "DatasetFormatError",
    "DatasetInfo",
    "SplitInfo",
    "DatasetWriter",
    "atomic_h5",
    "validate",
]

FORMAT = "recon-hdf5"
VERSION = 1
SPLITS = ("train", "val", "test")
VOXEL_RES = 32


class DatasetFormatError(ValueError):
    """A dataset file is missing, unreadable or does not follow format v1. The message is one
    line naming the file, the dataset path inside it and what was expected."""


@dataclass(frozen=True)
class SplitInfo:
    """Shape summary of one ``/<category>/<split>`` group."""

    category: str
    name: str
    split: str
    num_objects: int


@dataclass(frozen=True)
class DatasetInfo:
    """What ``validate`` learned about a file."""

    path: str
    image_size: int
    num_views: int
    elevation: float
    distance: float
    viewing_angle: float
    azimuth_step: float
    categories: dict[str, str] = field(default_factory=dict)  # group key -> human name
    splits: tuple[SplitInfo, ...] = ()

    def objects(self, split: str) -> dict[str, int]:
        """Objects per category in ``split`` (only categories that have it)."""
        return {s.category: s.num_objects for s in self.splits if s.split == split}


def _err(path: str | os.PathLike, where: str, msg: str) -> DatasetFormatError:
    return DatasetFormatError(f"{path}: {where}: {msg}")


def validate(path: str | os.PathLike, require_splits: tuple[str, ...] = ()) -> DatasetInfo:
    """Check that ``path`` is a valid format-v1 file without reading the image/voxel data.

    Args:
        path: file to check.
        require_splits: splits that every category must have (e.g. ``("train",)``).
    Returns:
        a ``DatasetInfo``.
    Raises:
        DatasetFormatError: one line naming the file, the dataset path and what was expected.
    """
    path = str(path)
    if not os.path.exists(path):
        raise _err(path, "/", "file not found")
    if not os.path.isfile(path):
        raise _err(path, "/", "expected a file, found a directory or special file")
    try:
        is_h5 = h5py.is_hdf5(path)
    except OSError as e:
        raise _err(path, "/", f"cannot read file ({e.strerror or e})") from None
    if not is_h5:
        raise _err(path, "/", "not an HDF5 file (expected a recon-hdf5 dataset)")
    try:
        with h5py.File(path, "r") as f:
            return _validate_open(path, f, require_splits)
    except DatasetFormatError:
        raise
    except (OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise _err(path, "/", f"unreadable or truncated HDF5 file ({type(e).__name__}: {e})") from None


def _attr(path: str, f: h5py.File, key: str, kind: type) -> object:
    if key not in f.attrs:
        raise _err(path, "/", f"missing file attribute {key!r}")
    value = f.attrs[key]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    try:
        if kind is str:
            if not isinstance(value, str):
                raise TypeError
            return value
        if kind is int:
            if float(value) != int(value):
                raise TypeError
            return int(value)
        v = float(value)
        if not np.isfinite(v):
            raise TypeError
        return v
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
        raise _err(path, "/", f"file attribute {key!r}={value!r} is not a valid {kind.__name__}") from None


def _validate_open(path: str, f: h5py.File, require_splits: tuple[str, ...]) -> DatasetInfo:
    fmt = _attr(path, f, "format", str)
    if fmt != FORMAT:
        raise _err(path, "/", f"attribute format={fmt!r}, expected {FORMAT!r}")
    version = _attr(path, f, "version", int)
    if version != VERSION:
        raise _err(path, "/", f"attribute version={version}, expected {VERSION} (unsupported format version)")
    size = _attr(path, f, "image_size", int)
    views = _attr(path, f, "num_views", int)
    if size <= 0 or views <= 0:
        raise _err(path, "/", f"image_size={size} and num_views={views} must be positive")
    info_kw = dict(
        elevation=_attr(path, f, "elevation", float),
        distance=_attr(path, f, "distance", float),
        viewing_angle=_attr(path, f, "viewing_angle", float),
        azimuth_step=_attr(path, f, "azimuth_step", float),
    )
    categories: dict[str, str] = {}
    splits: list[SplitInfo] = []
    if len(f.keys()) == 0:
        raise _err(path, "/", "no category groups (expected at least one /<category>)")
    for cat in sorted(f.keys()):
        grp = f[cat]
        if not isinstance(grp, h5py.Group):
            raise _err(path, f"/{cat}", "expected a category group, found a dataset")
        name = grp.attrs.get("name", cat)
        name = name.decode() if isinstance(name, bytes) else str(name)
        categories[cat] = name
        present = [s for s in grp.keys()]
        unknown = [s for s in present if s not in SPLITS]
        if unknown:
            raise _err(path, f"/{cat}/{unknown[0]}", f"unknown split, expected one of {', '.join(SPLITS)}")
        for s in require_splits:
            if s not in grp:
                raise _err(path, f"/{cat}/{s}", f"missing split {s!r} (expected groups {', '.join(require_splits)})")
        for s in present:
            n = _validate_split(path, grp[s], f"/{cat}/{s}", size, views)
            splits.append(SplitInfo(cat, name, s, n))
    return DatasetInfo(path=path, image_size=size, num_views=views, categories=categories,
                       splits=tuple(splits), **info_kw)


def _validate_split(path: str, grp: h5py.Group, where: str, size: int, views: int) -> int:
    if not isinstance(grp, h5py.Group):
        raise _err(path, where, "expected a split group with images/voxels/object_ids")
    for key in ("images", "voxels", "object_ids"):
        if key not in grp:
            raise _err(path, f"{where}/{key}", "missing dataset")
        if not isinstance(grp[key], h5py.Dataset):
            raise _err(path, f"{where}/{key}", "expected a dataset, found a group")
    images, voxels, ids = grp["images"], grp["voxels"], grp["object_ids"]
    n = images.shape[0] if images.ndim else -1
    want = (n, views, 4, size, size)
    if images.ndim != 5 or tuple(images.shape) != want:
        raise _err(path, f"{where}/images", f"shape {tuple(images.shape)}, expected (N, {views}, 4, {size}, {size})")
    if images.dtype != np.uint8:
        raise _err(path, f"{where}/images", f"dtype {images.dtype}, expected uint8")
    if tuple(voxels.shape) != (n, VOXEL_RES, VOXEL_RES, VOXEL_RES):
        raise _err(path, f"{where}/voxels",
                   f"shape {tuple(voxels.shape)}, expected ({n}, {VOXEL_RES}, {VOXEL_RES}, {VOXEL_RES}) matching images")
    if voxels.dtype not in (np.uint8, np.bool_):
        raise _err(path, f"{where}/voxels", f"dtype {voxels.dtype}, expected uint8 or bool")
    if tuple(ids.shape) != (n,):
        raise _err(path, f"{where}/object_ids", f"shape {tuple(ids.shape)}, expected ({n},) matching images")
    if ids.dtype.kind not in ("O", "S", "U"):
        raise _err(path, f"{where}/object_ids", f"dtype {ids.dtype}, expected variable-length strings")
    for key in ("images", "voxels"):
        _check_stored(path, grp[key], f"{where}/{key}")
    return n


def _check_stored(path: str, ds: h5py.Dataset, where: str) -> None:
    """Reject data that is declared but not stored (a huge declared shape, a writer killed midway):
    HDF5 would silently read it back as zeros. Checks the last element's storage only (cheap)."""
    if ds.size == 0:
        return
    if ds.chunks is None:
        if ds.id.get_storage_size() < ds.size * ds.dtype.itemsize:
            raise _err(path, where, f"shape {tuple(ds.shape)} is declared but its data is not stored "
                                    f"(truncated or never written)")
        return
    last = tuple(dim - 1 - (dim - 1) % c for dim, c in zip(ds.shape, ds.chunks))
    try:
        info = ds.id.get_chunk_info_by_coord(last)
    except (AttributeError, RuntimeError):  # HDF5 < 1.10.5 cannot tell
        return
    if info.byte_offset is None:
        raise _err(path, where, f"shape {tuple(ds.shape)} is declared but the data of object {ds.shape[0] - 1} "
                                f"is not stored (truncated or never written)")


@contextmanager
def atomic_h5(path: str | os.PathLike) -> Iterator[h5py.File]:
    """Open a temp HDF5 file beside ``path``; rename it onto ``path`` only on success."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        yield f


class DatasetWriter:
    """Streaming writer of format-v1 files. Use as a context manager::

        with DatasetWriter(out) as w:
            w.add_category("03001627", "chair", source="synthetic")
            w.create_split("03001627", "train", capacity=N)
            w.append("03001627", "train", images, voxels, object_id)  # one object at a time

    The file only appears at ``out`` when the ``with`` block exits without error and without a
    stop signal (``recon.signals``: inside the block SIGINT/SIGTERM set a flag, ``check()`` raises
    ``Interrupted``); otherwise the temp file is removed.
    Arrays: ``images (24, 4, S, S) uint8``, ``voxels (32, 32, 32)`` bool/uint8.
    """

    def __init__(self, path: str | os.PathLike, image_size: int = cameras.IMAGE_SIZE,
                 num_views: int = cameras.NUM_VIEWS, elevation: float = cameras.ELEVATION,
                 distance: float = cameras.DISTANCE, viewing_angle: float = cameras.VIEWING_ANGLE,
                 azimuth_step: float = cameras.AZIMUTH_STEP, compression: int = 4):
        self.path = Path(path)
        self.attrs = dict(format=FORMAT, version=VERSION, image_size=image_size, num_views=num_views,
                          elevation=elevation, distance=distance, viewing_angle=viewing_angle,
                          azimuth_step=azimuth_step)
        self.compression = compression
        self._ctx = None
        self._f: h5py.File | None = None
        self._count: dict[tuple[str, str], int] = {}

    @contextmanager
    def _open(self) -> Iterator[h5py.File]:
        # SIGINT/SIGTERM only set a flag while the temp file exists (recon.signals): the writer's owner
        # checks it between objects, and leaving the block with it set removes the file instead of renaming.
        with graceful_stop(), atomic_h5(self.path) as f:
            yield f

    def __enter__(self) -> "DatasetWriter":
        self._ctx = self._open()
        self._f = self._ctx.__enter__()
        try:
            for k, v in self.attrs.items():
                self._f.attrs[k] = v
        except BaseException as e:
            self._ctx.__exit__(type(e), e, e.__traceback__)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool | None:
        if exc_type is None:
            try:
                check()  # stopped since the last object: remove the temp file rather than rename it
                self._finalize()
            except BaseException as e:
                self._ctx.__exit__(type(e), e, e.__traceback__)
                raise
        return self._ctx.__exit__(exc_type, exc, tb)

    def add_category(self, key: str, name: str, source: str = "", **attrs: str | int | float) -> None:
        """Create ``/<key>`` with attrs ``name``, ``source`` and any extra string/number ``attrs``."""
        grp = self._f.require_group(key)
        grp.attrs["name"] = name
        grp.attrs["source"] = source
        for k, v in attrs.items():
            grp.attrs[k] = v

    def create_split(self, key: str, split: str, capacity: int | None = None) -> None:
        """Create (resizable) datasets for ``/<key>/<split>``."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}, expected one of {SPLITS}")
        grp = self._f[key].require_group(split)
        s, v = self.attrs["image_size"], self.attrs["num_views"]
        cap = max(int(capacity or 0), 0)
        grp.create_dataset("images", shape=(cap, v, 4, s, s), maxshape=(None, v, 4, s, s), dtype=np.uint8,
                           chunks=(1, 1, 4, s, s), compression="gzip", compression_opts=self.compression,
                           shuffle=True)
        r = VOXEL_RES
        grp.create_dataset("voxels", shape=(cap, r, r, r), maxshape=(None, r, r, r), dtype=np.uint8,
                           chunks=(1, r, r, r), compression="gzip", compression_opts=self.compression)
        grp.create_dataset("object_ids", shape=(cap,), maxshape=(None,), dtype=h5py.string_dtype())
        self._count[(key, split)] = 0

    def append(self, key: str, split: str, images: np.ndarray, voxels: np.ndarray, object_id: str) -> None:
        """Append one object. ``images (V, 4, S, S) uint8``, ``voxels (32, 32, 32)``."""
        grp = self._f[key][split]
        s, v = self.attrs["image_size"], self.attrs["num_views"]
        if images.shape != (v, 4, s, s) or images.dtype != np.uint8:
            raise ValueError(f"images for {key}/{split}/{object_id}: got {images.shape} {images.dtype}, "
                             f"expected ({v}, 4, {s}, {s}) uint8")
        if voxels.shape != (VOXEL_RES,) * 3:
            raise ValueError(f"voxels for {key}/{split}/{object_id}: got {voxels.shape}, expected (32, 32, 32)")
        i = self._count[(key, split)]
        for name in ("images", "voxels", "object_ids"):
            if grp[name].shape[0] <= i:
                grp[name].resize(i + 1, axis=0)
        grp["images"][i] = images
        grp["voxels"][i] = voxels.astype(np.uint8)
        grp["object_ids"][i] = object_id
        self._count[(key, split)] = i + 1

    def _finalize(self) -> None:
        for (key, split), n in self._count.items():
            for name in ("images", "voxels", "object_ids"):
                self._f[key][split][name].resize(n, axis=0)
