"""A folder of meshes -> format-v2 HDF5 (24 renders, the 32^3 ground-truth grids of both 3D-IoU
protocols and the normalised GT mesh per object).

Layout of ``src_dir``:

* one subfolder per category (the subfolder name is the category key; one of the 13
  ShapeNet synset ids gets its usual name, e.g. ``03001627`` -> chair); meshes are found
  recursively inside it (so ShapeNet's ``<synset>/<model>/models/model_normalized.obj`` works);
* or a flat folder of meshes = one category named after the folder.

Each mesh (``.obj .ply .stl .glb .gltf .off``, loaded with trimesh, scenes concatenated) is
normalised like ShapeNet (bounding box centred, longest side 1), rendered at the 24 standard
views with ``recon.data.raster`` and voxelized by ``occupancy``: a generalized winding number
(``recon.ops.voxelize_exact.winding_occupancy``: robust to open seams, small holes and loose panels) for
everything that is not a closed body, exact ray parity for closed bodies (same answer, much
faster), united so that overlapping parts never cancel. That solid, sampled at the cell centres of
each protocol's grid, is the ``exact`` grid (``voxels_exact``) and, united with SoftRas's
voxelization of the mesh, the ``softras`` grid (``voxels``;
``recon.data.ground_truth.ground_truth_grid``). Objects are split per category by
ratio after a seeded shuffle; a category with at least 3 objects gets
at least one object in every split with a positive ratio, smaller ones go to train.
Unreadable, empty, zero-extent or non-finite meshes are skipped with a warning and reported.

Bounded work per mesh (docs/operations.md): a file larger than ``MAX_MESH_BYTES`` is skipped
unread (trimesh's parsers need about ten times a text file's size); a mesh with more than
``MAX_MESH_FACES`` faces is decimated to that budget by vertex clustering (``recon.data.decimate``)
before it is rendered, voxelized and stored, or skipped when clustering cannot meet it; the 24
views are rendered a few at a time (``_views_per_call``) so the renderer's per-face buffers stay
bounded; and the default worker count is capped by the free memory (``mesh_workers``).
A folder that cannot be listed, or a category folder whose name is not valid UTF-8 (HDF5 names
are UTF-8), stops the conversion with a message naming it (undecodable bytes as ``\\xNN``).
"""

from __future__ import annotations

import io
import math
import os
import warnings
import zlib
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from recon import cameras
from recon.data._parallel import available_memory, default_workers, pack_voxels, parallel_map, unpack_voxels
from recon.data.categories import category_name, resolve_categories
from recon.data.decimate import decimate_to_budget
from recon.names import name_problem, object_id_problem
from recon.names import shown as name_shown
from recon.data.normalize import unit_cube_transform
from recon.data.raster import render_views
from recon.data.schema import SPLITS, VOXEL_RES, DatasetInfo, DatasetWriter, validate
from recon.errors import ConfigError, InputError, MissingPathError, PathPermissionError
from recon.ops.voxelize_exact import voxelize, winding_occupancy
from recon.ops.voxelize import PROTOCOLS, SOFTRAS_IOU, grid_bounds
from recon.data.ground_truth import ground_truth_grid
from recon.progress import progress_bar

__all__ = ["MESH_EXTENSIONS", "MAX_MESH_BYTES", "MAX_MESH_FACES", "MeshError", "find_meshes", "load_mesh",
           "occupancy", "split_counts", "parse_split", "mesh_workers", "convert_meshes"]

MESH_EXTENSIONS = (".obj", ".ply", ".stl", ".glb", ".gltf", ".off")
MAX_MESH_BYTES = 128 * 2 ** 20  # larger mesh files are skipped unread: loading needs ~10x a text file's size
MAX_MESH_FACES = 200_000  # face budget: larger meshes are decimated to it (ShapeNet's models are mostly below)
_VIEW_FACES_PER_CALL = 1_000_000  # render_views holds ~400 bytes per (view, face): ~0.4 GB per call
_BASE_WORKER_BYTES = 600 * 2 ** 20  # a worker's interpreter, torch and buffers without the mesh
_BYTES_PER_FILE_BYTE = 12  # a worker's peak per byte of its largest mesh file (measured: 76 MB OBJ -> 1.0 GB)


class MeshError(InputError):
    """A mesh file cannot be used; the message is the reason."""


def shown(path: str | os.PathLike) -> str:
    """A path as text that can always be printed: undecodable bytes of its name become ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _entries(folder: Path) -> list[os.DirEntry]:
    """The folder's entries, hidden ones (a leading dot) left out. Raises PermissionError naming it."""
    try:
        with os.scandir(folder) as it:
            return [e for e in it if not e.name.startswith(".")]
    except PermissionError:
        raise PathPermissionError(f"{shown(folder)}: folder is not readable (permission denied)") from None


def _is_mesh(entry: os.DirEntry) -> bool:
    return entry.is_file() and Path(entry.name).suffix.lower() in MESH_EXTENSIONS


def _meshes_in(folder: Path, recursive: bool) -> list[Path]:
    """Sorted mesh files of ``folder`` (and of its subfolders, not following symlinked ones, if ``recursive``)."""
    found = []
    for e in _entries(folder):
        if _is_mesh(e):
            found.append(Path(e.path))
        elif recursive and e.is_dir(follow_symlinks=False):
            found += _meshes_in(Path(e.path), True)
    return sorted(found)


def find_meshes(src_dir: str | os.PathLike, classes: Sequence[str] | None = None) -> dict[str, list[Path]]:
    """Category key -> sorted mesh files.

    Args:
        src_dir: category subfolders, or a flat folder of meshes (one category named after it).
        classes: optional subset of category keys or names.
    Raises:
        FileNotFoundError / PermissionError / ValueError with one-line messages naming the folder.
    """
    src = Path(src_dir)
    if not src.is_dir():
        raise MissingPathError(f"{shown(src)}: source directory not found")
    top = _entries(src)
    found = {e.name: _meshes_in(Path(e.path), True) for e in sorted(top, key=lambda e: e.name) if e.is_dir()}
    found = {k: v for k, v in found.items() if v}
    folders = {k: src / k for k in found}
    if not found:
        flat = _meshes_in(src, False)
        if not flat:
            raise MissingPathError(f"{shown(src)}: no mesh files ({', '.join(MESH_EXTENSIONS)}) in it or its "
                                   f"subfolders")
        found, folders = {src.resolve().name: flat}, {src.resolve().name: src.resolve()}
    elif any(_is_mesh(e) for e in top):
        warnings.warn(f"{shown(src)}: mesh files at the top level are ignored (categories are the subfolders)",
                      stacklevel=2)
    if classes:
        wanted = resolve_categories(classes, list(found), shown(src))
        found = {k: found[k] for k in found if k in wanted}
    for key in found:
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"{shown(folders[key])}: folder name is not valid UTF-8 (category names in the HDF5 "
                             f"file must be); rename the folder") from None
        problem = name_problem(key)
        if problem:
            raise InputError(f"{shown(folders[key])}: folder name {name_shown(key)} {problem} (it becomes the category "
                             f"name); rename the folder")
    return found


def load_mesh(path: str | os.PathLike, max_faces: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Load, check and normalise one mesh (centre the bounding box, longest side 1), decimated to
    ``max_faces`` faces (default ``MAX_MESH_FACES``) when it has more (``recon.data.decimate``).

    Returns:
        verts (V, 3) float32 in ``[-0.5, 0.5]^3``, faces (F, 3) int64.
    Raises:
        MeshError: unreadable, empty, non-finite, zero-extent, a file over ``MAX_MESH_BYTES``, or
            more than ``max_faces`` faces even after decimation.
    """
    import trimesh  # ~0.5 s: loaded only where meshes are read (``convert synthetic`` never needs it)

    try:
        size = os.path.getsize(path)
        if size == 0:
            raise MeshError("empty file (0 bytes)")
        if size > MAX_MESH_BYTES:
            raise MeshError(f"file of {size:,} bytes: larger than the limit of {MAX_MESH_BYTES:,} bytes per mesh file "
                            f"(decimate it first)")
        name = str(path)
        if name != name.encode("utf-8", "surrogateescape").decode("utf-8", "replace"):
            # a non-UTF-8 file name, which trimesh cannot open: hand it the bytes instead
            with open(path, "rb") as fh:
                mesh = trimesh.load(io.BytesIO(fh.read()), file_type=Path(name).suffix.lstrip(".").lower(),
                                    force="mesh", process=False)
        else:
            mesh = trimesh.load(name, force="mesh", process=False)
    except MeshError:
        raise
    except Exception as e:  # trimesh's loaders raise arbitrary exception types on bad files
        raise MeshError(f"unreadable ({type(e).__name__}: {' '.join(str(e).split())[:120]})") from None
    verts = np.asarray(getattr(mesh, "vertices", np.zeros((0, 3))), dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(getattr(mesh, "faces", np.zeros((0, 3))), dtype=np.int64).reshape(-1, 3)
    if len(faces) == 0 or len(verts) == 0:
        raise MeshError(f"empty mesh ({len(verts)} vertices, {len(faces)} faces)")
    if faces.min() < 0 or faces.max() >= len(verts):
        raise MeshError("face index out of range")
    try:
        centre, scale = unit_cube_transform(verts[np.unique(faces)])
    except ValueError as e:
        raise MeshError(str(e)) from None
    with np.errstate(over="ignore", invalid="ignore"):
        verts = (verts - centre) * scale
    verts[~np.isfinite(verts).all(1)] = 0.0  # unused vertices only
    tri = verts[faces]
    if not np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1).max() > 1e-12:
        raise MeshError("degenerate mesh (every face has zero area)")
    del tri, mesh
    try:
        verts, faces, _ = decimate_to_budget(verts, faces, MAX_MESH_FACES if max_faces is None else max_faces)
    except ValueError as e:
        raise MeshError(str(e)) from None
    return verts.astype(np.float32), faces


def mesh_workers(files: Sequence[str | os.PathLike], workers: int | None) -> int:
    """Worker processes for converting ``files``: ``workers`` as given, or by default every core but
    no more than the free memory holds (each worker's peak taken as ``_BASE_WORKER_BYTES`` plus
    ``_BYTES_PER_FILE_BYTE`` times the largest file), at least one."""
    if workers is not None:
        return default_workers(workers)
    largest = max((min(os.path.getsize(p), MAX_MESH_BYTES) for p in files), default=0)
    per_worker = _BASE_WORKER_BYTES + _BYTES_PER_FILE_BYTE * largest
    free = available_memory()
    by_memory = max(1, free // per_worker) if free is not None else default_workers(None)
    return max(1, min(default_workers(None), by_memory))


def occupancy(verts: np.ndarray, faces: np.ndarray, lo: float = -0.5, hi: float = 0.5) -> np.ndarray:
    """32^3 occupancy of an arbitrary normalised mesh at the cell centres of a grid over ``[lo, hi]^3``.

    Vertices are merged and every connected body is oriented consistently outwards (the
    winding number needs it; STL-like soups share no vertices). Bodies that are closed
    manifolds are filled by exact ray parity (``recon.ops.voxelize_exact.voxelize``: for a closed body it
    equals the winding-number test and is ~100x faster); everything else (open shells, holes,
    loose panels) goes through one ``recon.ops.voxelize_exact.winding_occupancy`` call over all of it, so
    pieces that only together enclose a volume still fill it. The result is the union, so
    overlapping parts never cancel.

    Args:
        verts: (V, 3) in ``[-0.5, 0.5]^3``; faces: (F, 3).
    Returns:
        (32, 32, 32) bool in our axis order.
    """
    import trimesh  # see load_mesh

    mesh = trimesh.Trimesh(verts, faces, process=True)
    occ = torch.zeros((VOXEL_RES,) * 3, dtype=torch.bool)
    if len(mesh.faces) == 0:
        return occ.numpy()
    trimesh.repair.fix_normals(mesh, multibody=True)
    open_parts = []
    for body in mesh.split(only_watertight=False, repair=False):  # repair would fill holes
        if body.is_watertight and body.is_winding_consistent:
            occ |= voxelize(torch.from_numpy(np.asarray(body.vertices, np.float64))[None],
                            torch.from_numpy(np.asarray(body.faces, np.int64)), resolution=VOXEL_RES, lo=lo, hi=hi)[0]
        else:
            open_parts.append(body)
    if open_parts:
        rest = trimesh.util.concatenate(open_parts) if len(open_parts) > 1 else open_parts[0]
        occ |= winding_occupancy(torch.from_numpy(np.asarray(rest.vertices, np.float64)),
                                 torch.from_numpy(np.asarray(rest.faces, np.int64)), resolution=VOXEL_RES, lo=lo, hi=hi)
    return occ.numpy()


def _check(path: Path) -> str | None:
    try:
        load_mesh(path)
    except MeshError as e:
        return str(e)
    return None


def ground_truth_grids(verts: np.ndarray, faces: np.ndarray) -> dict[str, np.ndarray]:
    """``{protocol: (32, 32, 32) bool}``: the ground-truth grid of a normalised mesh under every 3D-IoU
    protocol (``ground_truth_grid`` of the mesh, the solid being ``occupancy`` on that protocol's grid)."""
    v, f = torch.from_numpy(np.asarray(verts, np.float32)), torch.from_numpy(np.asarray(faces, np.int64))
    return {p: ground_truth_grid(v, f, torch.from_numpy(occupancy(verts, faces, *grid_bounds(p, VOXEL_RES))), p).numpy()
            for p in PROTOCOLS}


def _convert(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | str:
    try:
        verts, faces = load_mesh(path)
    except MeshError as e:
        return str(e)
    try:
        per_call = max(1, _VIEW_FACES_PER_CALL // max(1, len(faces)))
        views = list(range(cameras.NUM_VIEWS))
        images = np.concatenate([render_views(verts, faces, views[i:i + per_call])  # views are independent
                                 for i in range(0, len(views), per_call)])
        grids = ground_truth_grids(verts, faces)
    except (ValueError, RuntimeError, IndexError, MemoryError) as e:
        return f"processing failed ({type(e).__name__}: {' '.join(str(e).split())[:120]})"
    return images, pack_voxels(grids[SOFTRAS_IOU]), pack_voxels(grids["exact"]), verts, faces


def _object_id(path: Path, root: Path) -> str:
    """A mesh's object id: its path below its category folder, without suffix. HDF5 strings are UTF-8:
    a non-UTF-8 file name stays readable (``\\xe9``) instead of failing."""
    return shown(path.relative_to(root).with_suffix("").as_posix())


def split_counts(n: int, ratios: Sequence[float]) -> list[int]:
    """Objects per split for ``n`` objects: largest-remainder rounding; with ``n >= 3`` every
    split with a positive ratio gets at least one; with ``n < 3`` everything goes to the first
    split with a positive ratio."""
    r = np.asarray(ratios, dtype=np.float64)
    pos = np.flatnonzero(r > 0)
    if n < 3 or len(pos) == 1:
        out = [0] * len(r)
        out[int(pos[0])] = n
        return out
    raw = r * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    for i in pos:
        while counts[i] == 0:
            counts[int(np.argmax(counts))] -= 1
            counts[i] += 1
    return counts.tolist()


def parse_split(split: str | Sequence[float], flag: str = "split") -> tuple[float, float, float]:
    """Train, val, test ratios from ``"0.8,0.1,0.1"`` or three numbers: non-negative, summing to 1.

    Raises:
        ValueError: one line naming ``flag`` (e.g. ``"--split"``) and the value.
    """
    text = split if isinstance(split, str) else ",".join(f"{x:g}" for x in split)
    try:
        ratios = tuple(float(x) for x in (split.split(",") if isinstance(split, str) else split))
    except (TypeError, ValueError):
        raise ConfigError(f"{flag} {text!r}: expected three comma-separated numbers such as 0.8,0.1,0.1") from None
    if len(ratios) != 3 or any(not math.isfinite(x) or x < 0 for x in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise ConfigError(f"{flag} {text!r}: expected three non-negative train,val,test ratios summing to 1")
    if ratios[0] <= 0:
        raise ConfigError(f"{flag} {text!r}: the train ratio must be positive (every category needs train objects)")
    return ratios  # type: ignore[return-value]


def convert_meshes(
    src_dir: str | os.PathLike,
    out_path: str | os.PathLike,
    split: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    classes: Sequence[str] | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> tuple[DatasetInfo, list[tuple[str, str]]]:
    """Convert a folder of meshes into a format-v2 HDF5 file.

    Args:
        src_dir: see the module docstring.
        out_path: output ``.h5`` (written atomically).
        split: (train, val, test) ratios summing to 1, or ``"0.8,0.1,0.1"``.
        seed: shuffle seed of the per-category split.
        classes: optional subset of category keys or names.
        workers: processes (default ``mesh_workers``: every core, as far as the free memory allows;
            ``<= 1`` runs here).
        progress: rich progress bars.
    Returns:
        (DatasetInfo of the written file, skipped ``[(path, reason)]``).
    Raises:
        ValueError: bad ratios, unknown classes, a non-UTF-8 category folder name, or no usable mesh
            at all (nothing written).
        FileNotFoundError / PermissionError: missing or unreadable source folder, no mesh files.
        recon.signals.Interrupted: on SIGINT/SIGTERM (nothing written).
    """
    ratios = parse_split(split)
    found = find_meshes(src_dir, classes)
    files = [p for paths in found.values() for p in paths]
    workers = mesh_workers(files, workers)
    bar = progress_bar(enabled=progress)
    skipped: list[tuple[str, str]] = []
    with bar:
        # Pass 1: which files load? (Splitting needs the usable objects.)
        task = bar.add_task("checking meshes", total=len(files))
        reasons = {}
        with parallel_map(_check, files, workers) as results:
            for p, reason in zip(files, results):
                reasons[p] = reason
                bar.advance(task)
        root = {key: Path(src_dir) / key if (Path(src_dir) / key).is_dir() else Path(src_dir) for key in found}
        for key, paths in found.items():  # a file name becomes an object id: no control characters in it
            for p in paths:
                problem = object_id_problem(_object_id(p, root[key]))
                if reasons[p] is None and problem:
                    reasons[p] = f"its name {problem} (it becomes the object id)"
        plan: dict[str, dict[str, list[Path]]] = {}
        for key, paths in found.items():
            ok = [p for p in paths if reasons[p] is None]
            skipped += [(str(p), reasons[p]) for p in paths if reasons[p] is not None]
            if not ok:
                continue
            order = np.random.default_rng([int(seed), zlib.crc32(key.encode())]).permutation(len(ok))
            ok = [ok[i] for i in order]
            counts = split_counts(len(ok), ratios)
            starts = np.cumsum([0] + counts)
            plan[key] = {s: sorted(ok[starts[i]:starts[i + 1]]) for i, s in enumerate(SPLITS)}
        if not plan:
            raise InputError(f"{shown(src_dir)}: no usable meshes ({len(skipped)} skipped: "
                             + "; ".join(f"{shown(Path(p).name)}: {r}" for p, r in skipped[:3])
                             + ("; ..." if len(skipped) > 3 else "") + ")")
        # Pass 2: render + voxelize, written in a fixed order.
        jobs = [(key, s, p) for key, splits in plan.items() for s in SPLITS for p in splits[s]]
        task = bar.add_task("rendering + voxelizing", total=len(jobs))
        trained: set[str] = set()  # categories with at least one converted train object
        with DatasetWriter(out_path, voxel_protocol=SOFTRAS_IOU, grids=("exact",), meshes=True) as writer:
            for key, splits in plan.items():
                writer.add_category(key, category_name(key), source=f"meshes:{shown(src_dir)}",
                                    rgb_convention="Lambert shaded, premultiplied over black (background 0)",
                                    occupancy="voxels_exact: cell centres, ray parity per closed body, winding "
                                              "number > 0.5 for the rest, union; voxels: that solid on the "
                                              "softras grid united with SoftRas's voxelization of the mesh")
                for s in SPLITS:
                    writer.create_split(key, s, capacity=len(splits[s]))
            with parallel_map(_convert, [j[2] for j in jobs], workers) as results:
                for (key, s, p), res in zip(jobs, results):
                    bar.advance(task)
                    if isinstance(res, str):
                        skipped.append((str(p), res))
                        continue
                    images, softras, exact, verts, faces = res
                    writer.append(key, s, images, unpack_voxels(softras), _object_id(p, root[key]),
                                  grids={"exact": unpack_voxels(exact)},
                                  mesh=(verts, faces))
                    if s == "train":
                        trained.add(key)
            lost = [key for key in plan if key not in trained]
            if lost:  # every train mesh of a category failed late: refuse rather than write an invalid file
                raise InputError(f"{shown(src_dir)}: category {lost[0]!r} has no usable train mesh (its train files "
                                 f"failed to convert; every category needs train objects); nothing written")
    if skipped:
        more = f"; ... and {len(skipped) - 10} more" if len(skipped) > 10 else ""
        warnings.warn(f"{shown(src_dir)}: skipped {len(skipped)} mesh file(s): "
                      + "; ".join(f"{shown(p)}: {r}" for p, r in skipped[:10]) + more, stacklevel=2)
    return validate(out_path), skipped
