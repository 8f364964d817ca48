"""HDF5 dataset format, version 2 (reads 1 and 2): an atomic writer and the validator every reader uses.

(One module of ~490 lines on purpose: the writer and the validator are the two halves of one
format definition, and every field added to one must be added to the other.)

Layout::

    file attrs: format="recon-hdf5", version=2, image_size, num_views,
                elevation, distance, viewing_angle, azimuth_step
    /<category>/                        attrs: name, source
    /<category>/<split>/images          uint8 (N, 24, 4, S, S)   RGBA, alpha = coverage * 255
    /<category>/<split>/voxels          uint8 or bool (N, 32, 32, 32), attr protocol (v2)
    /<category>/<split>/object_ids      variable-length str (N,)
    v2, optional:
    /<category>/<split>/voxels_<p>      uint8 (N, 32, 32, 32), attr protocol=<p>: the grid of another protocol
    /<category>/<split>/mesh_verts      float32 (sum V, 3)  every object's normalised GT mesh, one after another
    /<category>/<split>/mesh_faces      int32 (sum F, 3)    vertex indices local to the object
    /<category>/<split>/mesh_offsets    int64 (N + 1, 2)    object i: mesh_verts[o[i, 0]:o[i + 1, 0]],
                                                            mesh_faces[o[i, 1]:o[i + 1, 1]]; o[0] = (0, 0)

Ground-truth grids (``recon.ops.voxelize``, ``recon.data.ground_truth``). ``voxels.attrs["protocol"]``
names the 3D-IoU protocol the grid was made under, so that a prediction voxelized under that protocol
is compared with a grid of the same kind. Our converters (v2) store ``voxels`` under ``softras`` (the
default protocol; SoftRas's grid spans ``[-16/31, 16/31]``: see ``recon.ops.voxelize.grid_bounds``) and
``voxels_exact``, the v1 grid; files converted from SoftRas/NMR npz store NMR's grids as ``softras``
(what SoftRas's ``evaluate_iou`` compares with) and no mesh. A v1 file has no attribute: its grid is
``softras`` when the category has a ``voxel_transform`` attribute (npz conversions), else ``exact``.

The meshes are stored as flat, chunked, compressed arrays plus per-object offsets (rather than HDF5
variable-length rows, which HDF5 cannot compress), so one object's mesh is two slices.

Voxel axis order (ours, documented once): ``voxels[i, j, k]`` is the cell whose centre is
``(lo + (i + 0.5) h, lo + (j + 0.5) h, lo + (k + 0.5) h)``, ``h = (hi - lo) / R``, in world ``(x, y, z)``
(the frame the cameras in ``recon.cameras`` look at); ``[lo, hi] = [-0.5, 0.5]`` for ``exact`` grids.
Images are chunked one view of one object at a time so random view access decompresses 16 KB, not the
whole object.
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
from recon.choices import SPLITS
from recon.errors import InputError
from recon.io import atomic_path
from recon.names import name_problem, object_id_problem, shown
from recon.ops.voxelize import SOFTRAS_IOU, PROTOCOL_ALIASES, PROTOCOLS, STORED_NAMES, check_protocol
from recon.signals import check, graceful_stop

__all__ = [
    "FORMAT",
    "VERSION",
    "READABLE_VERSIONS",
    "SPLITS",
    "VOXEL_RES",
    "VOXELS_PROTOCOL_ATTR",
    "MESH_VERTS",
    "MESH_FACES",
    "MESH_OFFSETS",
    "DatasetFormatError",
    "DatasetInfo",
    "SplitInfo",
    "DatasetWriter",
    "atomic_h5",
    "validate",
]

FORMAT = "recon-hdf5"
VERSION = 2  # what DatasetWriter writes
READABLE_VERSIONS = (1, 2)
VOXEL_RES = 32
VOXELS_PROTOCOL_ATTR = "protocol"  # attribute of a grid: the 3D-IoU protocol it was made under
MESH_VERTS, MESH_FACES, MESH_OFFSETS = "mesh_verts", "mesh_faces", "mesh_offsets"
_MESH_KEYS = (MESH_VERTS, MESH_FACES, MESH_OFFSETS)


class DatasetFormatError(InputError):
    """A dataset file is missing, unreadable or does not follow format v1/v2. The message is one
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
    version: int = VERSION
    grids: tuple[str, ...] = ()  # protocols with a ground-truth grid in every split ("voxels" first)
    meshes: bool = False  # every split stores its objects' GT meshes

    def objects(self, split: str) -> dict[str, int]:
        """Objects per category in ``split`` (only categories that have it)."""
        return {s.category: s.num_objects for s in self.splits if s.split == split}


def _err(path: str | os.PathLike, where: str, msg: str) -> DatasetFormatError:
    return DatasetFormatError(f"{path}: {where}: {msg}")


def validate(path: str | os.PathLike, require_splits: tuple[str, ...] = (), *, check_meshes: bool = False,
             deep: bool = False) -> DatasetInfo:
    """Check that ``path`` is a valid format v1 or v2 file. By default the image/voxel/mesh data are
    not read (object ids and mesh offsets are: they are small).

    Always checked, besides the layout: category keys and names are names, not paths or control
    sequences (``recon.names.name_problem``), no two categories share a name (results are kept per
    name), object ids have no control characters, every category has train objects (training draws
    from every category; eval's category-mean row is made of them), and every stored GT mesh has
    vertices and faces.

    Args:
        path: file to check.
        require_splits: splits that every category must have, with at least one object (e.g. ``("val",)``).
        check_meshes: also read the GT meshes (v2): face indices in ``[0, V)`` of their object, finite vertices.
        deep: read every chunk of every dataset (images, grids, ids, meshes), so that corrupt compressed data
            is found now rather than mid-training; implies ``check_meshes``. Costs a full decompression
            of the file (docs/operations.md has the time on the default dataset).
    Returns:
        a ``DatasetInfo``.
    Raises:
        DatasetFormatError: one line naming the file, the dataset path (category, split, object) and what
            was expected.
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
            return _validate_open(path, f, require_splits, check_meshes or deep, deep)
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


def _validate_open(path: str, f: h5py.File, require_splits: tuple[str, ...], check_meshes: bool,
                   deep: bool) -> DatasetInfo:
    fmt = _attr(path, f, "format", str)
    if fmt != FORMAT:
        raise _err(path, "/", f"attribute format={fmt!r}, expected {FORMAT!r}")
    version = _attr(path, f, "version", int)
    if version not in READABLE_VERSIONS:
        raise _err(path, "/", f"attribute version={version}, expected one of "
                              f"{', '.join(map(str, READABLE_VERSIONS))} (unsupported format version)")
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
    grids: list[tuple[str, ...]] = []
    meshes: list[bool] = []
    if len(f.keys()) == 0:
        raise _err(path, "/", "no category groups (expected at least one /<category>)")
    for cat in sorted(f.keys()):
        problem = name_problem(cat)
        if problem:  # before /{cat} appears in any message: it may hold a newline
            raise _err(path, "/", f"category group {shown(cat)} {problem} (category names are data, never paths: "
                                  f"letters, digits, spaces, punctuation other than / and \\)")
        grp = f[cat]
        if not isinstance(grp, h5py.Group):
            raise _err(path, f"/{cat}", "expected a category group, found a dataset")
        name = grp.attrs.get("name", cat)
        name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        problem = name_problem(name)
        if problem:
            raise _err(path, f"/{cat}", f"attribute name={shown(name)} {problem} (category names are data, never "
                                        f"paths: letters, digits, spaces, punctuation other than / and \\)")
        categories[cat] = name
        present = [s for s in grp.keys()]
        unknown = [s for s in present if s not in SPLITS]
        if unknown:
            raise _err(path, f"/{cat}/{unknown[0]}", f"unknown split, expected one of {', '.join(SPLITS)}")
        for s in require_splits:
            if s not in grp:
                raise _err(path, f"/{cat}/{s}", f"missing split {s!r} (expected groups {', '.join(require_splits)})")
        counts = {}
        for s in present:
            n = counts[s] = _validate_split(path, grp[s], f"/{cat}/{s}", size, views)
            splits.append(SplitInfo(cat, name, s, n))
            if n == 0 and s in require_splits and s != "train":  # train: always required, below
                raise _err(path, f"/{cat}/{s}", f"no objects in split {s!r} (every category needs some for this "
                                                f"command: a category left out would change what the means average)")
            if version >= 2:
                grids.append(_validate_grids(path, grp[s], f"/{cat}/{s}", n))
                meshes.append(_validate_meshes(path, grp[s], f"/{cat}/{s}", n, check_meshes))
            else:
                grids.append((SOFTRAS_IOU if "voxel_transform" in grp.attrs else "exact",))
                meshes.append(False)
            if deep:
                _read_every_chunk(path, grp[s], f"/{cat}/{s}")
        if not counts.get("train"):
            raise _err(path, f"/{cat}/train", "no train objects (every category needs some: training draws from every "
                                              "category, and eval's category-mean row is made of them)")
    _check_unique_names(path, categories)
    common = tuple(p for p in grids[0] if all(p in g for g in grids)) if grids else ()
    return DatasetInfo(path=path, image_size=size, num_views=views, categories=categories,
                       splits=tuple(splits), version=version, grids=common, meshes=bool(meshes) and all(meshes),
                       **info_kw)


def _check_unique_names(path: str, categories: dict[str, str]) -> None:
    """No two categories share a name (compared case-insensitively, as ``--classes`` matches names):
    results are kept per name, so two would be merged into one row."""
    seen: dict[str, str] = {}
    for key, name in categories.items():
        other = seen.setdefault(name.casefold(), key)
        if other != key:
            raise _err(path, f"/{key}", f"category name {shown(name)} is also the name of /{other} (each category "
                                        f"needs its own name: results are reported per name)")


def _validate_grids(path: str, grp: h5py.Group, where: str, n: int) -> tuple[str, ...]:
    """v2 grids of a split: ``voxels`` (its protocol first) and every ``voxels_<p>``. Returns the protocols."""
    out = []
    for key in ["voxels"] + sorted(k for k in grp.keys() if k.startswith("voxels_")):
        ds = grp[key]
        if key != "voxels":
            if not isinstance(ds, h5py.Dataset) or tuple(ds.shape) != (n,) + (VOXEL_RES,) * 3 \
                    or ds.dtype not in (np.uint8, np.bool_):
                raise _err(path, f"{where}/{key}", f"expected a uint8 or bool dataset of shape ({n}, {VOXEL_RES}, "
                                                   f"{VOXEL_RES}, {VOXEL_RES}) matching images")
            _check_stored(path, ds, f"{where}/{key}")
        protocol = ds.attrs.get(VOXELS_PROTOCOL_ATTR)
        stored = protocol.decode("utf-8", "replace") if isinstance(protocol, bytes) else protocol
        protocol = PROTOCOL_ALIASES.get(stored, stored)  # files store "softras" for softras-iou
        if protocol not in PROTOCOLS or (key != "voxels" and key != f"voxels_{stored}"):
            want = key[len("voxels_"):] if key != "voxels" else " | ".join(STORED_NAMES.values())
            raise _err(path, f"{where}/{key}", f"attribute {VOXELS_PROTOCOL_ATTR}={protocol!r}, expected {want} "
                                               f"(the 3D-IoU protocol the grid was made under)")
        if protocol in out:
            raise _err(path, f"{where}/{key}", f"a second grid of protocol {protocol!r}")
        out.append(protocol)
    return tuple(out)


def _validate_meshes(path: str, grp: h5py.Group, where: str, n: int, check_values: bool = False) -> bool:
    """The v2 GT meshes of a split, when present: all three datasets, shapes, dtypes and offsets
    (monotonic, starting at 0, ending at the array lengths, at least one vertex and one face per
    object); with ``check_values`` also the data (``_check_mesh_values``). Returns whether they are present."""
    have = [k for k in _MESH_KEYS if k in grp]
    if not have:
        return False
    if len(have) != len(_MESH_KEYS):
        missing = [k for k in _MESH_KEYS if k not in grp]
        raise _err(path, f"{where}/{missing[0]}", f"missing dataset (GT meshes need {', '.join(_MESH_KEYS)})")
    verts, faces, offsets = (grp[k] for k in _MESH_KEYS)
    for key, ds, width, kinds in ((MESH_VERTS, verts, 3, "f"), (MESH_FACES, faces, 3, "iu"),
                                  (MESH_OFFSETS, offsets, 2, "iu")):
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 2 or ds.shape[1] != width or ds.dtype.kind not in kinds:
            raise _err(path, f"{where}/{key}", f"expected a 2-D {'float' if kinds == 'f' else 'integer'} dataset "
                                               f"with {width} columns")
    if offsets.shape[0] != n + 1:
        raise _err(path, f"{where}/{MESH_OFFSETS}", f"shape {tuple(offsets.shape)}, expected ({n + 1}, 2) "
                                                    f"(one row per object, plus one)")
    o = np.asarray(offsets[:], dtype=np.int64)
    ends = (verts.shape[0], faces.shape[0])
    if (o[0] != 0).any() or (np.diff(o, axis=0) < 0).any() or tuple(o[-1]) != ends:
        raise _err(path, f"{where}/{MESH_OFFSETS}", f"offsets must start at (0, 0), never decrease and end at "
                                                    f"{ends} (the mesh_verts, mesh_faces lengths)")
    sizes = np.diff(o, axis=0)  # (N, 2): vertices, faces of each object
    empty = np.flatnonzero((sizes == 0).any(axis=1))
    if len(empty):
        i = int(empty[0])
        raise _err(path, f"{where}/{MESH_OFFSETS}", f"{_object(grp, i)} has a GT mesh of {sizes[i, 0]} vertices and "
                                                    f"{sizes[i, 1]} faces (expected a surface: Chamfer, F-score and "
                                                    f"the oracle row are computed on it)")
    for key in (MESH_VERTS, MESH_FACES):
        _check_stored(path, grp[key], f"{where}/{key}")
    if check_values:
        _check_mesh_values(path, grp, where, o)
    return True


_MESH_BLOCK = 1 << 20  # rows of mesh_verts / mesh_faces read at a time (12 MiB each)


def _object(grp: h5py.Group, i: int) -> str:
    """``object 3 ('chair_0012')`` for a message (the id as stored, quoted and escaped)."""
    try:
        oid = grp["object_ids"][i]
    except (OSError, KeyError, ValueError, IndexError):
        return f"object {i}"
    return f"object {i} ({shown(oid.decode('utf-8', 'replace') if isinstance(oid, bytes) else str(oid))})"


def _check_mesh_values(path: str, grp: h5py.Group, where: str, o: np.ndarray) -> None:
    """Read the meshes of a split, a block of objects at a time: finite vertices, every face index in
    ``[0, V)`` of its own object. ``o`` (N + 1, 2) are the checked offsets."""
    nv = np.diff(o[:, 0])
    start, n = 0, len(o) - 1
    while start < n:
        end = start + 1
        while end < n and max(o[end + 1] - o[start]) <= _MESH_BLOCK:
            end += 1
        try:
            verts = grp[MESH_VERTS][o[start, 0]:o[end, 0]]
            faces = grp[MESH_FACES][o[start, 1]:o[end, 1]].astype(np.int64)
        except (OSError, ValueError) as e:
            raise _err(path, f"{where}/{MESH_VERTS}", f"objects {start}..{end - 1}: unreadable mesh data "
                                                      f"({' '.join(str(e).split())}): the file is corrupt") from None
        bad = ~np.isfinite(verts).all(axis=1)
        if bad.any():
            i = int(np.searchsorted(o[:, 0], o[start, 0] + np.argmax(bad), side="right") - 1)
            raise _err(path, f"{where}/{MESH_VERTS}", f"{_object(grp, i)}: its GT mesh has a NaN or infinite "
                                                      f"vertex (expected finite coordinates)")
        owner = np.repeat(np.arange(start, end), np.diff(o[start:end + 1, 1]))  # object of each face
        bad = ((faces < 0) | (faces >= nv[owner][:, None])).any(axis=1)
        if bad.any():
            k = int(np.argmax(bad))
            i = int(owner[k])
            raise _err(path, f"{where}/{MESH_FACES}", f"{_object(grp, i)}: face {o[start, 1] + k - o[i, 1]} is "
                                                      f"{faces[k].tolist()}, outside [0, {nv[i]}) (the object's "
                                                      f"vertex count)")
        start = end


def _read_every_chunk(path: str, grp: h5py.Group, where: str) -> None:
    """Read (decompress) every per-object dataset of a split one object at a time, naming the first
    object whose data cannot be read. The meshes are read by ``_check_mesh_values``."""
    keys = ["images", "voxels"] + sorted(k for k in grp.keys() if k.startswith("voxels_"))
    for key in keys:
        ds = grp[key]
        for i in range(ds.shape[0]):
            try:
                ds[i]
            except (OSError, ValueError) as e:
                raise _err(path, f"{where}/{key}", f"{_object(grp, i)}: unreadable data "
                                                   f"({' '.join(str(e).split())}): the file is corrupt") from None


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
    _check_object_ids(path, ids, where)  # after images: their stored data bound N
    return n


def _check_object_ids(path: str, ids: h5py.Dataset, where: str) -> None:
    """Every object id is text without control characters, of a sane length (``recon.names``)."""
    if ids.size == 0:
        return
    try:
        values = ids[:]
    except (OSError, ValueError) as e:
        raise _err(path, f"{where}/object_ids", f"unreadable ({' '.join(str(e).split())})") from None
    for i, oid in enumerate(values):
        text = oid.decode("utf-8", "replace") if isinstance(oid, bytes) else str(oid)
        problem = object_id_problem(text)
        if problem:
            raise _err(path, f"{where}/object_ids", f"object {i}: id {shown(text)} {problem}")


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
    """Streaming writer of format-v2 files. Use as a context manager::

        with DatasetWriter(out, voxel_protocol=SOFTRAS_IOU, grids=("exact",), meshes=True) as w:
            w.add_category("03001627", "chair", source="synthetic")
            w.create_split("03001627", "train", capacity=N)
            w.append("03001627", "train", images, voxels, object_id,
                     grids={"exact": exact_voxels}, mesh=(verts, faces))  # one object at a time

    The file only appears at ``out`` when the ``with`` block exits without error and without a
    stop signal (``recon.signals``: inside the block SIGINT/SIGTERM set a flag, ``check()`` raises
    ``Interrupted``); otherwise the temp file is removed.
    Arrays: ``images (24, 4, S, S) uint8``, ``voxels (32, 32, 32)`` bool/uint8 (the grid of
    ``voxel_protocol``; default ``exact``, cell-centre sampling of ``[-0.5, 0.5]^3`` as in v1),
    ``grids {protocol: (32, 32, 32)}`` (exactly the protocols of ``grids``), ``mesh``:
    ``(verts (V, 3), faces (F, 3))`` when ``meshes``.
    """

    def __init__(self, path: str | os.PathLike, image_size: int = cameras.IMAGE_SIZE,
                 num_views: int = cameras.NUM_VIEWS, elevation: float = cameras.ELEVATION,
                 distance: float = cameras.DISTANCE, viewing_angle: float = cameras.VIEWING_ANGLE,
                 azimuth_step: float = cameras.AZIMUTH_STEP, compression: int = 4, *,
                 voxel_protocol: str = "exact", grids: tuple[str, ...] = (), meshes: bool = False):
        self.path = Path(path)
        self.attrs = dict(format=FORMAT, version=VERSION, image_size=image_size, num_views=num_views,
                          elevation=elevation, distance=distance, viewing_angle=viewing_angle,
                          azimuth_step=azimuth_step)
        bad = [p for p in (voxel_protocol, *grids) if PROTOCOL_ALIASES.get(p, p) not in PROTOCOLS]
        if not bad:
            voxel_protocol, grids = check_protocol(voxel_protocol), tuple(check_protocol(p) for p in grids)
        if bad or voxel_protocol in grids or len(set(grids)) != len(grids):
            raise ValueError(f"DatasetWriter: voxel_protocol {voxel_protocol!r} and grids {grids!r} must be distinct "
                             f"protocols among {', '.join(PROTOCOLS)}")
        self.voxel_protocol, self.grids, self.meshes = voxel_protocol, tuple(grids), bool(meshes)
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
        for name, protocol in (("voxels", self.voxel_protocol),
                               *((f"voxels_{STORED_NAMES[p]}", p) for p in self.grids)):
            grp.create_dataset(name, shape=(cap, r, r, r), maxshape=(None, r, r, r), dtype=np.uint8,
                               chunks=(1, r, r, r), compression="gzip", compression_opts=self.compression)
            grp[name].attrs[VOXELS_PROTOCOL_ATTR] = STORED_NAMES[protocol]
        grp.create_dataset("object_ids", shape=(cap,), maxshape=(None,), dtype=h5py.string_dtype())
        if self.meshes:
            for name, dtype in ((MESH_VERTS, np.float32), (MESH_FACES, np.int32)):
                grp.create_dataset(name, shape=(0, 3), maxshape=(None, 3), dtype=dtype, chunks=(4096, 3),
                                   compression="gzip", compression_opts=self.compression, shuffle=True)
            grp.create_dataset(MESH_OFFSETS, data=np.zeros((1, 2), np.int64), maxshape=(None, 2), chunks=(1024, 2))
        self._count[(key, split)] = 0

    def _per_object(self) -> tuple[str, ...]:
        return ("images", "voxels", *(f"voxels_{STORED_NAMES[p]}" for p in self.grids), "object_ids")

    def append(self, key: str, split: str, images: np.ndarray, voxels: np.ndarray, object_id: str,
               grids: dict[str, np.ndarray] | None = None,
               mesh: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Append one object. ``images (V, 4, S, S) uint8``, ``voxels (32, 32, 32)`` (the
        ``voxel_protocol`` grid), ``grids`` the other protocols' grids, ``mesh`` its GT mesh."""
        grp = self._f[key][split]
        s, v = self.attrs["image_size"], self.attrs["num_views"]
        where = f"{key}/{split}/{object_id}"
        if images.shape != (v, 4, s, s) or images.dtype != np.uint8:
            raise ValueError(f"images for {where}: got {images.shape} {images.dtype}, "
                             f"expected ({v}, 4, {s}, {s}) uint8")
        grids = {check_protocol(p, "grids"): g for p, g in (grids or {}).items()}
        if set(grids) != set(self.grids):
            raise ValueError(f"grids for {where}: got {sorted(grids)}, expected {sorted(self.grids)}")
        for name, grid in (("voxels", voxels), *grids.items()):
            if np.shape(grid) != (VOXEL_RES,) * 3:
                raise ValueError(f"{name} grid for {where}: got {np.shape(grid)}, expected (32, 32, 32)")
        if (mesh is not None) != self.meshes:
            raise ValueError(f"mesh for {where}: {'expected one' if self.meshes else 'this writer stores no meshes'}")
        if mesh is not None:
            mv, mf = np.asarray(mesh[0], np.float32), np.asarray(mesh[1], np.int64)
            if mv.ndim != 2 or mv.shape[1] != 3 or mf.ndim != 2 or mf.shape[1] != 3 or \
                    (mf.size and (mf.min() < 0 or mf.max() >= len(mv))) or not np.isfinite(mv).all():
                raise ValueError(f"mesh for {where}: expected finite verts (V, 3) and faces (F, 3) indexing them")
        i = self._count[(key, split)]
        for name in self._per_object():
            if grp[name].shape[0] <= i:
                grp[name].resize(i + 1, axis=0)
        grp["images"][i] = images
        grp["voxels"][i] = np.asarray(voxels).astype(np.uint8)
        for p, grid in grids.items():
            grp[f"voxels_{STORED_NAMES[p]}"][i] = np.asarray(grid).astype(np.uint8)
        grp["object_ids"][i] = object_id
        if mesh is not None:
            offsets = grp[MESH_OFFSETS]
            v0, f0 = (int(x) for x in offsets[i])
            for name, arr, start in ((MESH_VERTS, mv, v0), (MESH_FACES, mf.astype(np.int32), f0)):
                grp[name].resize(start + len(arr), axis=0)
                grp[name][start:start + len(arr)] = arr
            offsets.resize(i + 2, axis=0)
            offsets[i + 1] = (v0 + len(mv), f0 + len(mf))
        self._count[(key, split)] = i + 1

    def _finalize(self) -> None:
        for (key, split), n in self._count.items():
            grp = self._f[key][split]
            for name in self._per_object():
                grp[name].resize(n, axis=0)
            if self.meshes:
                grp[MESH_OFFSETS].resize(n + 1, axis=0)
                last = grp[MESH_OFFSETS][n]
                grp[MESH_VERTS].resize(int(last[0]), axis=0)
                grp[MESH_FACES].resize(int(last[1]), axis=0)
