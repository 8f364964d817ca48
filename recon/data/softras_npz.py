"""SoftRas / NMR ``.npz`` dataset -> format-v1 HDF5, streaming object by object.

Input (the files of SoftRas ``examples/recon/download_dataset.sh``)::

    <classid>_<split>_images.npz   arr_0 uint8 (N, 24, 4, 64, 64)   RGBA, alpha = mask * 255
    <classid>_<split>_voxels.npz   arr_0 bool  (N, 32, 32, 32)

Nothing is ever loaded whole: the ``.npz`` is opened as a zip, the ``.npy`` header of its
array is parsed (``numpy.lib.format``) and rows are read one object at a time from the
(deflate-compressed) member stream.

Voxel axes. NMR's grids are not in our order (``recon.data.schema``: ``voxels[i, j, k]`` <->
world ``(x, y, z)``). SoftRas ``examples/recon/models.py`` (``evaluate_iou``) voxelizes its
predicted mesh with ``soft_renderer.functional.voxelization``, whose kernels write cell
``[c0, c1, c2]`` for vertex coordinates ``(c0, c1, c2) = (x, y, z)`` (ours, up to its 31/32
cell scale), then compares ``pred.transpose(0, 2, 1, 3)[:, :, :, ::-1]`` with the NMR grid.
So ``nmr[a, b, c] = ours[b, a, 31 - c]``: NMR's axis 0 holds world +y, axis 1 world +x and
axis 2 world -z. We write that as the spec ``"+y+x-z"`` (``NMR_AXES``): spec letters name,
for each axis of the *source* grid, the signed world axis it holds. Any of the 48 signed
axis permutations can be given explicitly; ``"auto"`` scores all 48 on the first objects of
each class by projecting the voxels with our cameras onto the alpha masks, keeps ``"nmr"``
unless another transform is clearly better (then warns), and applies the winner to every
object of the class. The chosen spec is stored in ``/<class>.attrs["voxel_transform"]``.
"""

from __future__ import annotations

import itertools
import os
import re
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from recon.data.schema import SPLITS, VOXEL_RES, DatasetInfo, DatasetWriter, validate

__all__ = [
    "SHAPENET_CLASSES",
    "NMR_AXES",
    "AXIS_SPECS",
    "NpzFormatError",
    "NpzRowReader",
    "parse_axes",
    "apply_axes",
    "to_source_axes",
    "axes_matrix",
    "score_axes",
    "detect_axes",
    "convert_softras",
]

SHAPENET_CLASSES: dict[str, str] = {
    "02691156": "airplane",
    "02828884": "bench",
    "02933112": "cabinet",
    "02958343": "car",
    "03001627": "chair",
    "03211117": "display",
    "03636649": "lamp",
    "03691459": "loudspeaker",
    "04090263": "rifle",
    "04256520": "sofa",
    "04379243": "table",
    "04401088": "telephone",
    "04530566": "watercraft",
}

NMR_AXES = "+y+x-z"
IDENTITY_AXES = "+x+y+z"
AXIS_SPECS: tuple[str, ...] = tuple(
    "".join(f"{s}{'xyz'[p]}" for s, p in zip(signs, perm))
    for perm in itertools.permutations(range(3)) for signs in itertools.product("+-", repeat=3))

IMAGES_TAIL = (24, 4, 64, 64)
VOXELS_TAIL = (VOXEL_RES,) * 3
_AUTO_OBJECTS = 4
_AUTO_VIEWS = (0, 4, 8, 12, 16, 20)
_AUTO_MARGIN = 0.01


class NpzFormatError(ValueError):
    """An input ``.npz`` is missing, unreadable or has the wrong shape/dtype (one-line message)."""


# ----------------------------------------------------------------------------------------------
# Axis transforms
# ----------------------------------------------------------------------------------------------

def parse_axes(spec: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Parse a signed axis permutation.

    Args:
        spec: ``"nmr"``, ``"identity"`` or three signed world axes, one per source-grid axis,
            e.g. ``"+y+x-z"`` (signs optional, ``"yx-z"``).
    Returns:
        (perm, signs): source axis ``a`` holds world axis ``perm[a]`` times ``signs[a]``.
    Raises:
        ValueError: for anything else.
    """
    s = spec.strip().lower()
    s = {"nmr": NMR_AXES, "identity": IDENTITY_AXES, "ours": IDENTITY_AXES}.get(s, s)
    m = re.fullmatch(r"([+-]?)([xyz])([+-]?)([xyz])([+-]?)([xyz])", s)
    if not m or len({m.group(2), m.group(4), m.group(6)}) != 3:
        raise ValueError(f"invalid voxel axes {spec!r}: expected 'auto', 'nmr', 'identity' or a signed "
                         f"permutation of x, y, z such as '+y+x-z'")
    perm = tuple("xyz".index(m.group(k)) for k in (2, 4, 6))
    signs = tuple(-1 if m.group(k) == "-" else 1 for k in (1, 3, 5))
    return perm, signs  # type: ignore[return-value]


def canonical_axes(spec: str) -> str:
    """``"nmr"`` -> ``"+y+x-z"`` etc."""
    perm, signs = parse_axes(spec)
    return "".join(f"{'+' if s > 0 else '-'}{'xyz'[p]}" for p, s in zip(perm, signs))


def apply_axes(grid: np.ndarray, spec: str) -> np.ndarray:
    """Bring a source grid (trailing 3 axes) into our axis order.

    Args:
        grid: (..., R, R, R) in the source convention described by ``spec``.
    Returns:
        (..., R, R, R) with ``out[..., i, j, k]`` the cell at world ``(x_i, y_j, z_k)``.
    """
    perm, signs = parse_axes(spec)
    lead = grid.ndim - 3
    flipped = grid
    for a, s in enumerate(signs):
        if s < 0:
            flipped = np.flip(flipped, lead + a)
    axes = list(range(lead)) + [lead + perm.index(d) for d in range(3)]
    return np.ascontiguousarray(np.transpose(flipped, axes))


def to_source_axes(grid: np.ndarray, spec: str) -> np.ndarray:
    """Inverse of ``apply_axes``: our grid -> the source convention (e.g. NMR order for tests)."""
    perm, signs = parse_axes(spec)
    lead = grid.ndim - 3
    out = np.transpose(grid, list(range(lead)) + [lead + p for p in perm])
    for a, s in enumerate(signs):
        if s < 0:
            out = np.flip(out, lead + a)
    return np.ascontiguousarray(out)


def axes_matrix(spec: str) -> np.ndarray:
    """(3, 3) signed permutation ``M`` with ``world = M @ source_point`` for cell centres."""
    perm, signs = parse_axes(spec)
    m = np.zeros((3, 3))
    for a in range(3):
        m[perm[a], a] = signs[a]
    return m


def _surface_points(grid: np.ndarray) -> np.ndarray:
    """Centres (source frame) of occupied cells with an empty 6-neighbour, each split into 8
    sub-points at +-1/4 cell so that splats cover the projected cell without holes."""
    occ = np.asarray(grid).astype(bool)
    pad = np.pad(occ, 1)
    interior = occ.copy()
    for axis in range(3):
        for shift in (-1, 1):
            interior &= np.roll(pad, shift, axis)[1:-1, 1:-1, 1:-1]
    idx = np.argwhere(occ & ~interior)
    r = occ.shape[0]
    centres = -0.5 + (idx + 0.5) / r
    offs = np.array(list(itertools.product((-0.25, 0.25), repeat=3))) / r
    return (centres[:, None, :] + offs[None]).reshape(-1, 3)


def score_axes(voxels: np.ndarray, alpha: np.ndarray, views: Sequence[int] = _AUTO_VIEWS,
               specs: Sequence[str] = AXIS_SPECS) -> dict[str, float]:
    """Mean silhouette IoU of the voxels under each candidate transform.

    Args:
        voxels: (R, R, R) grid in the source convention.
        alpha: (len(views), S, S) uint8 alpha masks of the same object.
        views: the view indices of ``alpha``.
    Returns:
        {spec: mean over views of IoU(projected voxels, alpha > 127)}.
    """
    import torch

    from recon import cameras

    pts = _surface_points(voxels)
    s = alpha.shape[-1]
    masks = torch.from_numpy(np.asarray(alpha) > 127).reshape(len(views), -1)
    out = {}
    if len(pts) == 0:
        return {spec: 0.0 for spec in specs}
    az = cameras.view_azimuths(torch.as_tensor(list(views)))
    for spec in specs:
        world = torch.from_numpy(pts @ axes_matrix(spec).T).float()
        ndc = cameras.project(world[None].expand(len(views), -1, -1), az)
        col = ((ndc[..., 0] + 1) * s / 2).floor().long()
        row = ((1 - ndc[..., 1]) * s / 2).floor().long()
        ok = (col >= 0) & (col < s) & (row >= 0) & (row < s)
        flat = (torch.arange(len(views))[:, None] * s * s + row * s + col)[ok]
        proj = torch.zeros(len(views) * s * s, dtype=torch.bool)
        proj[flat] = True
        proj = proj.reshape(len(views), -1)
        inter = (proj & masks).sum(1).float()
        union = (proj | masks).sum(1).clamp_min(1).float()
        out[spec] = float((inter / union).mean())
    return out


def detect_axes(samples: Sequence[tuple[np.ndarray, np.ndarray]], views: Sequence[int] = _AUTO_VIEWS,
                prefer: str = NMR_AXES, margin: float = _AUTO_MARGIN) -> tuple[str, dict[str, float]]:
    """Pick the signed axis permutation that best explains the alpha masks.

    Args:
        samples: [(images (24, 4, S, S) uint8, voxels (R, R, R) source order)] of one class.
        prefer: returned unless another spec scores more than ``margin`` higher (ties between
            mirror-symmetric candidates are common).
    Returns:
        (spec, mean scores per spec).
    """
    total = {spec: 0.0 for spec in AXIS_SPECS}
    for images, voxels in samples:
        for spec, v in score_axes(voxels, images[list(views), 3], views).items():
            total[spec] += v / max(1, len(samples))
    best = max(total, key=total.get)
    prefer = canonical_axes(prefer)
    if total[best] <= total[prefer] + margin:
        best = prefer
    return best, total


# ----------------------------------------------------------------------------------------------
# Streaming .npz reader
# ----------------------------------------------------------------------------------------------

@dataclass
class NpzRowReader:
    """Read an ``.npz``'s single array one row (object) at a time.

    Args:
        path: ``.npz`` file.
        tail: expected shape after the first axis.
        dtypes: accepted dtypes (first one is the documented one).
        what: "images" / "voxels", for messages.
    Raises:
        NpzFormatError: with a one-line message naming the file and what was expected.
    """

    path: Path
    tail: tuple[int, ...]
    dtypes: tuple[np.dtype, ...]
    what: str

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        want = f"arr_0 {self.dtypes[0]} (N, {', '.join(map(str, self.tail))})"
        if not self.path.is_file():
            raise NpzFormatError(f"{self.path}: {self.what} file not found (expected {want})")
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as e:
            raise NpzFormatError(f"{self.path}: not a readable .npz (zip) file ({e}); expected {want}") from None
        names = [n for n in self._zip.namelist() if n.endswith(".npy")]
        member = "arr_0.npy" if "arr_0.npy" in names else (names[0] if len(names) == 1 else None)
        if member is None:
            self._zip.close()
            raise NpzFormatError(f"{self.path}: no arr_0 array inside (found {names or 'no arrays'}); expected {want}")
        try:
            self._fp = self._zip.open(member)
            version = np.lib.format.read_magic(self._fp)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(self._fp)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(self._fp)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            self.close()
            raise NpzFormatError(f"{self.path}: invalid .npy header in {member} ({e}); expected {want}") from None
        if len(shape) != 1 + len(self.tail) or tuple(shape[1:]) != self.tail or dtype not in self.dtypes:
            self.close()
            raise NpzFormatError(f"{self.path}: {member[:-4]} has shape {tuple(shape)} dtype {dtype}, expected {want}")
        if fortran and len(shape) > 1 and shape[0] > 1:
            self.close()
            raise NpzFormatError(f"{self.path}: {member[:-4]} is stored in Fortran order; expected C order")
        self.num = int(shape[0])
        self.dtype = dtype
        self.row_bytes = int(np.prod(self.tail)) * dtype.itemsize
        self.rows_read = 0

    def read(self) -> np.ndarray:
        """The next row, shape ``tail``."""
        try:
            buf = self._fp.read(self.row_bytes)
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise NpzFormatError(f"{self.path}: corrupt data at object {self.rows_read} of {self.num} ({e})") from None
        if len(buf) != self.row_bytes:
            raise NpzFormatError(f"{self.path}: truncated at object {self.rows_read} of {self.num}")
        self.rows_read += 1
        return np.frombuffer(buf, dtype=self.dtype).reshape(self.tail)

    def close(self) -> None:
        fp = getattr(self, "_fp", None)
        if fp is not None:
            fp.close()
        self._zip.close()

    def __enter__(self) -> "NpzRowReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _read_pairs(images: Path, voxels: Path):
    """Open both readers of one (class, split) and check that they agree."""
    ri = NpzRowReader(images, IMAGES_TAIL, (np.dtype(np.uint8),), "images")
    try:
        rv = NpzRowReader(voxels, VOXELS_TAIL, (np.dtype(np.bool_), np.dtype(np.uint8)), "voxels")
    except NpzFormatError:
        ri.close()
        raise
    if ri.num != rv.num:
        ri.close()
        rv.close()
        raise NpzFormatError(f"{voxels}: {rv.num} objects but {images.name} has {ri.num}; expected the same N")
    return ri, rv


# ----------------------------------------------------------------------------------------------
# Converter
# ----------------------------------------------------------------------------------------------

def _find_inputs(src: Path, classes: Sequence[str] | None,
                 splits: Sequence[str]) -> dict[str, dict[str, tuple[Path, Path]]]:
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: source directory not found")
    pattern = re.compile(r"^(?P<cls>[^_]+)_(?P<split>train|val|test)_(?P<kind>images|voxels)\.npz$")
    found: dict[str, dict[str, dict[str, Path]]] = {}
    for p in sorted(src.iterdir()):
        m = pattern.match(p.name)
        if m and m["split"] in splits:
            found.setdefault(m["cls"], {}).setdefault(m["split"], {})[m["kind"]] = p
    if not found:
        raise FileNotFoundError(f"{src}: no <classid>_<split>_images.npz / _voxels.npz files for splits "
                                f"{', '.join(splits)}")
    if classes:
        by_name = {v: k for k, v in SHAPENET_CLASSES.items()}
        wanted = []
        for c in classes:
            key = c if c in found else by_name.get(c.lower())
            if key not in found:
                raise ValueError(f"{src}: class {c!r} not found; available: "
                                 f"{', '.join(f'{k} ({SHAPENET_CLASSES.get(k, k)})' for k in sorted(found))}")
            wanted.append(key)
        found = {k: found[k] for k in sorted(set(wanted))}
    out: dict[str, dict[str, tuple[Path, Path]]] = {}
    for cls, per_split in sorted(found.items()):
        for split, kinds in per_split.items():
            for kind in ("images", "voxels"):
                if kind not in kinds:
                    other = "voxels" if kind == "images" else "images"
                    raise NpzFormatError(f"{src / f'{cls}_{split}_{kind}.npz'}: missing {kind} file "
                                         f"(found {kinds[other].name}); expected both {cls}_{split}_images.npz "
                                         f"and {cls}_{split}_voxels.npz")
            out.setdefault(cls, {})[split] = (kinds["images"], kinds["voxels"])
    return out


def _probe(pairs: dict[str, tuple[Path, Path]], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    samples = []
    for split in SPLITS:
        if split not in pairs or len(samples) >= k:
            continue
        ri, rv = _read_pairs(*pairs[split])
        try:
            for _ in range(min(k - len(samples), ri.num)):
                samples.append((ri.read().copy(), rv.read().copy()))
        finally:
            ri.close()
            rv.close()
    return samples


def convert_softras(
    src_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    classes: Sequence[str] | None = None,
    splits: Sequence[str] = SPLITS,
    voxel_axes: str = "auto",
    progress: bool = True,
) -> DatasetInfo:
    """Convert a SoftRas/NMR ``.npz`` folder into a format-v1 HDF5 file.

    Args:
        src_dir: folder with ``<classid>_<split>_{images,voxels}.npz``.
        out_path: output ``.h5`` (written atomically).
        classes: class ids or names (default: every class found).
        splits: splits to convert; a class lacking a split gets an empty one.
        voxel_axes: ``"auto"`` (detect per class, default), ``"nmr"`` (``"+y+x-z"``, see the
            module docstring), ``"identity"`` or any signed permutation spec.
        progress: rich progress bar.
    Returns:
        the written file's ``DatasetInfo``.
    Raises:
        NpzFormatError, FileNotFoundError, ValueError: one-line messages; nothing is written.
    """
    src = Path(src_dir)
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise ValueError(f"unknown splits {bad}, expected some of {', '.join(SPLITS)}")
    if voxel_axes != "auto":
        voxel_axes = canonical_axes(voxel_axes)
    inputs = _find_inputs(src, classes, splits)
    # Open every pair once up front: shape/dtype errors surface before anything is written.
    counts: dict[tuple[str, str], int] = {}
    for cls, per_split in inputs.items():
        for split, pair in per_split.items():
            ri, rv = _read_pairs(*pair)
            counts[(cls, split)] = ri.num
            ri.close()
            rv.close()
    transforms: dict[str, tuple[str, str]] = {}
    for cls, per_split in inputs.items():
        if voxel_axes != "auto":
            transforms[cls] = (voxel_axes, "given")
            continue
        samples = _probe(per_split, _AUTO_OBJECTS)
        if not samples:
            transforms[cls] = (NMR_AXES, "auto: no objects to probe, assumed nmr")
            continue
        spec, scores = detect_axes(samples)
        note = f"auto: IoU {scores[spec]:.3f} for {spec} (nmr {scores[NMR_AXES]:.3f}) on {len(samples)} objects"
        if spec != NMR_AXES:
            warnings.warn(f"{src}: class {cls}: voxel axes {spec} match the images better than the NMR "
                          f"convention {NMR_AXES} (IoU {scores[spec]:.3f} vs {scores[NMR_AXES]:.3f}); using {spec}",
                          stacklevel=2)
        if scores[spec] < 0.5:
            warnings.warn(f"{src}: class {cls}: voxels match the alpha masks poorly under every axis transform "
                          f"(best IoU {scores[spec]:.3f}); check that images and voxels belong together",
                          stacklevel=2)
        transforms[cls] = (spec, note)

    from rich.progress import MofNCompleteColumn, Progress

    bar = Progress(*Progress.get_default_columns(), MofNCompleteColumn(), disable=not progress)
    with DatasetWriter(out_path) as writer, bar:
        task = bar.add_task("softras", total=sum(counts.values()))
        for cls, per_split in inputs.items():
            writer.add_category(cls, SHAPENET_CLASSES.get(cls, cls), source=f"softras-npz:{src}",
                                voxel_transform=transforms[cls][0], voxel_transform_note=transforms[cls][1],
                                rgb_convention="nmr: rendered on white, RGB inverted (background 0)")
            for split in splits:
                writer.create_split(cls, split, capacity=counts.get((cls, split), 0))
                if split not in per_split:
                    continue
                ri, rv = _read_pairs(*per_split[split])
                try:
                    for i in range(ri.num):
                        images = ri.read()
                        voxels = apply_axes(rv.read(), transforms[cls][0])
                        writer.append(cls, split, images, voxels, f"{cls}_{split}_{i:06d}")
                        bar.advance(task)
                finally:
                    ri.close()
                    rv.close()
    return validate(out_path)
