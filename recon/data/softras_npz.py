"""SoftRas / NMR ``.npz`` dataset -> format-v2 HDF5, streaming object by object.

Input (the files of SoftRas ``examples/recon/download_dataset.sh``)::

    <classid>_<split>_images.npz   arr_0 uint8 (N, 24, 4, 64, 64)   RGBA, alpha = mask * 255
    <classid>_<split>_voxels.npz   arr_0 bool  (N, 32, 32, 32)

Nothing is ever loaded whole: the ``.npz`` is opened as a zip, the ``.npy`` header of its
array is parsed (``numpy.lib.format``) and rows are read one object at a time from the
(deflate-compressed) member stream.

Voxel axes: NMR's grids are not in our order; ``recon.data.voxel_axes`` maps them (``"nmr"`` =
``"+y+x-z"``, derived from SoftRas' evaluation code) and ``"auto"`` detects the map per class from
the alpha masks. The chosen spec is stored in ``/<class>.attrs["voxel_transform"]``.

Ground truth: NMR's grids are stored as the ``softras`` protocol's grid (SoftRas's ``evaluate_iou``
compares its own voxelization with them as they are, so that is what the published numbers mean);
the data have no meshes, hence no ``exact`` grid and no oracle row.
"""

from __future__ import annotations

import os
import re
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from recon.data.categories import category_name, resolve_categories
from recon.data.schema import SPLITS, VOXEL_RES, DatasetInfo, DatasetWriter, validate
from recon.ops.voxelize import SOFTRAS_IOU
from recon.data.voxel_axes import NMR_AXES, apply_axes, canonical_axes, detect_axes
from recon.errors import InputError, MissingPathError, PathPermissionError
from recon.names import name_problem, shown
from recon.progress import progress_bar
from recon.signals import check

__all__ = ["NpzFormatError", "NpzRowReader", "convert_softras"]

IMAGES_TAIL = (24, 4, 64, 64)
VOXELS_TAIL = (VOXEL_RES,) * 3
_AUTO_OBJECTS = 4  # objects per class that detect_axes scores


class NpzFormatError(InputError):
    """An input ``.npz`` is missing, unreadable or has the wrong shape/dtype (one-line message)."""


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
        raise MissingPathError(f"{src}: source directory not found")
    pattern = re.compile(r"^(?P<cls>[^_]+)_(?P<split>train|val|test)_(?P<kind>images|voxels)\.npz$")
    found: dict[str, dict[str, dict[str, Path]]] = {}
    try:
        entries = sorted(src.iterdir())
    except PermissionError:
        raise PathPermissionError(f"{src}: folder is not readable (permission denied)") from None
    for p in entries:
        m = pattern.match(p.name)
        if m and m["split"] in splits:
            found.setdefault(m["cls"], {}).setdefault(m["split"], {})[m["kind"]] = p
    if not found:
        raise MissingPathError(f"{src}: no <classid>_<split>_images.npz / _voxels.npz files for splits "
                               f"{', '.join(splits)}")
    if classes:
        found = {k: found[k] for k in sorted(resolve_categories(classes, sorted(found), str(src), kind="class"))}
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
    for cls, pairs in out.items():
        problem = name_problem(cls)
        if problem:  # the class id becomes the category name: refused before anything is written
            raise NpzFormatError(f"{src}: class id {shown(cls)} of {shown(pairs[next(iter(pairs))][0].name)} "
                                 f"{problem}; rename the files")
        if "train" not in pairs:
            raise NpzFormatError(f"{src / f'{cls}_train_images.npz'}: missing (class {cls} has "
                                 f"{', '.join(sorted(pairs))} files only; every category needs train objects)")
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
    """Convert a SoftRas/NMR ``.npz`` folder into a format-v2 HDF5 file (NMR's grids, no meshes).

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
        recon.signals.Interrupted: on SIGINT/SIGTERM (nothing written).
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

    bar = progress_bar(enabled=progress)
    with DatasetWriter(out_path, voxel_protocol=SOFTRAS_IOU) as writer, bar:
        task = bar.add_task("nmr", total=sum(counts.values()))
        for cls, per_split in inputs.items():
            writer.add_category(cls, category_name(cls), source=f"softras-npz:{src}",
                                voxel_transform=transforms[cls][0], voxel_transform_note=transforms[cls][1],
                                rgb_convention="nmr: rendered on white, RGB inverted (background 0)")
            for split in splits:
                writer.create_split(cls, split, capacity=counts.get((cls, split), 0))
                if split not in per_split:
                    continue
                ri, rv = _read_pairs(*per_split[split])
                try:
                    for i in range(ri.num):
                        check()  # a stop signal ends the conversion here (recon.signals): nothing is written
                        images = ri.read()
                        voxels = apply_axes(rv.read(), transforms[cls][0])
                        writer.append(cls, split, images, voxels, f"{cls}_{split}_{i:06d}")
                        bar.advance(task)
                finally:
                    ri.close()
                    rv.close()
    return validate(out_path)
