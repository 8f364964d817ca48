"""The app's "Browse an evaluation" tab without the web part: every scored prediction of an eval
JSON (``python -m pipelines.eval``'s ``per_object``) in a table, worst first, and for one row its
input image, predicted mesh and ground truth as files the page shows side by side.

Where each piece comes from, in this order:

* input image: the dataset (``--data``, else the checkpoint's training data), view ``view`` of the
  object, as the PNG ``recon.data.image_io.dataset_image_to_rgba`` writes (it reads back as exactly
  the tensor eval fed the model); else the ``_input.png`` eval saved next to the row's mesh;
* predicted mesh: the ``.glb`` eval saved for the row (``mesh`` in the record: the first views of the
  first objects, ``--figures``); else the app's model run on that dataset image (``AppService``,
  the same code path as ``pipelines.predict``), said so in the row's note, with a warning when the
  app's checkpoint is not the one evaluated;
* ground truth: the object's GT mesh when the file stores one (format v2), else its voxel grid under
  the eval's protocol as a closed surface of cubes (``recon.mesh.voxels_to_mesh``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from PIL import Image

from recon.data.image_io import dataset_image_to_rgba
from recon.data.schema import DatasetFormatError, validate
from recon.errors import InputError
from recon.mesh import voxels_to_mesh
from recon.report.mesh_export import save_glb
from recon.data.ground_truth import GroundTruth
from recon.ops.voxelize import DEFAULT_PROTOCOL, grid_bounds
from recon.report import prediction_mesh_name

__all__ = ["ALL", "COLUMNS", "GT_COLOUR", "EvalFileError", "EvalRow", "RowFiles", "EvalBrowser", "find_eval_json"]

ALL = "all categories"
COLUMNS = ["rank", "category", "object", "view", "IoU"]
GT_COLOUR = (0.45, 0.75, 0.45)  # sRGB of ground-truth meshes in the page (predictions: their colours or grey)


class EvalFileError(InputError):
    """An eval JSON that cannot be browsed; the message names the file and what was expected."""


@dataclass(frozen=True)
class EvalRow:
    """One scored prediction: ``index`` in ``per_object``, ``category`` (name), ``object_id``, ``view``,
    ``iou``, ``mesh`` (the file stem eval saved, or None)."""

    index: int
    category: str
    object_id: str
    view: int
    iou: float
    mesh: str | None


@dataclass(frozen=True)
class RowFiles:
    """What the page shows for a row (paths, None when not available) and a note on where each came from."""

    image: Path | None
    prediction: Path | None
    ground_truth: Path | None
    note: str


def find_eval_json(checkpoint: str | os.PathLike) -> Path | None:
    """The eval JSON next to a run: ``eval_test.json`` in the run directory of ``checkpoint`` (a run
    directory or a checkpoint file in it), else the newest ``eval_*.json`` there; None if none."""
    from recon.runs import run_dir_of

    p = Path(checkpoint)
    run = p if p.is_dir() else run_dir_of(p)
    if (run / "eval_test.json").is_file():
        return run / "eval_test.json"
    found = sorted(run.glob("eval_*.json"), key=lambda q: q.stat().st_mtime, reverse=True)
    return found[0] if found else None


def _rows(path: Path, record: dict[str, Any]) -> list[EvalRow]:
    per = record.get("per_object")
    if not isinstance(per, list):
        raise EvalFileError(f"{path}: no per_object list (expected the JSON python -m pipelines.eval writes)")
    rows = []
    for i, r in enumerate(per):
        try:
            rows.append(EvalRow(i, str(r["category"]), str(r["object_id"]), int(r["view"]), float(r["iou"]),
                                str(r["mesh"]) if r.get("mesh") else None))
        except (KeyError, TypeError, ValueError):
            raise EvalFileError(f"{path}: per_object[{i}] is {r!r}; expected {{category, object_id, view, iou}}") \
                from None
    return rows


class EvalBrowser:
    """An eval JSON's rows and the files of one row.

    Args:
        eval_json: the record ``python -m pipelines.eval`` wrote.
        data: the dataset it was evaluated on (None: rows still list, images and ground truth do not show).
        work_dir: where row files are written (one folder per row, reused).
        service: the app's model (``recon.app.service.AppService``) for rows eval saved no mesh for.
    Raises:
        EvalFileError: the file is missing, not JSON or not an eval record.
        DatasetFormatError: ``data`` is not a usable dataset.
    """

    def __init__(self, eval_json: str | os.PathLike, data: str | os.PathLike | None, work_dir: str | os.PathLike,
                 service: Any | None = None):
        self.path = Path(eval_json)
        try:
            record = json.loads(self.path.read_text())
        except FileNotFoundError:
            raise EvalFileError(f"{self.path}: no such eval JSON") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise EvalFileError(f"{self.path}: not a readable eval JSON ({e})") from None
        if not isinstance(record, dict):
            raise EvalFileError(f"{self.path}: expected a JSON object (an eval record)")
        self.record = record
        self.rows = _rows(self.path, record)
        self.split = str(record.get("split", "test"))
        self.protocol = str(record.get("protocol", DEFAULT_PROTOCOL))
        self.data = str(data) if data else None
        self.keys: dict[str, str] = {}  # category name -> group key
        if self.data is not None:
            info = validate(self.data, require_splits=(self.split,))
            self.keys = {name: key for key, name in info.categories.items()}
        self.work_dir = Path(work_dir)
        self.service = service
        self.mesh_dir = self._mesh_dir()

    def _mesh_dir(self) -> Path | None:
        """Where eval saved its meshes: ``outputs.meshes`` as written, or relative to the JSON's folder."""
        written = (self.record.get("outputs") or {}).get("meshes")
        candidates = [Path(written)] if written else []
        candidates.append(self.path.parent / f"eval_{self.split}" / "meshes")
        return next((c for c in candidates if c.is_dir()), None)

    @property
    def categories(self) -> list[str]:
        return sorted({r.category for r in self.rows})

    @property
    def title(self) -> str:
        r = self.record
        iou = r.get("mean_iou")
        mean = f", mean IoU {iou:.4f}" if isinstance(iou, (int, float)) else ""
        return (f"{self.path}: {r.get('encoder', '?')} at step {r.get('step', '?')} on the {self.split} split, "
                f"protocol {self.protocol}{mean}, {len(self.rows)} scored predictions")

    def table(self, category: str = ALL, worst_first: bool = True) -> list[list[Any]]:
        """Rows as ``COLUMNS`` (rank 1 = the lowest IoU when ``worst_first``), filtered by category name."""
        rows = [r for r in self.rows if category in (ALL, r.category)]
        rows.sort(key=lambda r: (r.iou, r.index) if worst_first else (-r.iou, r.index))
        return [[k + 1, r.category, r.object_id, r.view, round(r.iou, 4)] for k, r in enumerate(rows)]

    def find(self, category: str, object_id: str, view: int) -> EvalRow:
        """The row of (category, object, view). Raises KeyError when the record has none."""
        for r in self.rows:
            if r.category == category and r.object_id == str(object_id) and r.view == int(view):
                return r
        raise KeyError(f"{category} {object_id} view {view}")

    def _object_index(self, f: h5py.File, key: str, object_id: str) -> int | None:
        ids = [x.decode() if isinstance(x, bytes) else str(x) for x in f[key][self.split]["object_ids"][:]]
        return ids.index(object_id) if object_id in ids else None

    def files(self, row: EvalRow) -> RowFiles:
        """Write (once) and return the row's input image, predicted mesh and ground truth."""
        stem = prediction_mesh_name(row.category, row.object_id, row.view)
        out = self.work_dir / stem
        out.mkdir(parents=True, exist_ok=True)
        notes = []
        image = prediction = truth = None
        key = self.keys.get(row.category)
        index = None
        if self.data is None:
            notes.append("no dataset given (--data): input image and ground truth are not shown")
        elif key is None:
            notes.append(f"{self.data} has no category {row.category!r}")
        else:
            with h5py.File(self.data, "r") as f:
                index = self._object_index(f, key, row.object_id)
                if index is None:
                    notes.append(f"{self.data}: /{key}/{self.split} has no object {row.object_id!r}")
                else:
                    image = out / "input.png"
                    if not image.exists():
                        rgba = dataset_image_to_rgba(f[key][self.split]["images"][index, row.view])
                        Image.fromarray(rgba, "RGBA").save(image)
        saved = self.mesh_dir / f"{row.mesh}.glb" if self.mesh_dir is not None and row.mesh else None
        if saved is not None and saved.is_file():
            prediction = saved
            notes.append(f"prediction: the mesh eval saved ({saved})")
            if image is None and (self.mesh_dir / f"{row.mesh}_input.png").is_file():
                image = self.mesh_dir / f"{row.mesh}_input.png"
        elif image is not None and self.service is not None:
            prediction = out / "prediction.glb"
            if not prediction.exists():
                answer = self.service.try_image(image, name="prediction")
                os.replace(answer.glb, prediction)
            notes.append(f"prediction: the app's model on this input ({self._model_note()})")
        else:
            notes.append("prediction: eval saved no mesh for this row and there is no input to predict from")
        if index is not None:
            truth = self._ground_truth(key, index, out, notes)
        return RowFiles(image, prediction, truth, "; ".join(notes))

    def _model_note(self) -> str:
        mine = Path(self.service.checkpoint).resolve()
        theirs = self.record.get("checkpoint")
        if theirs and Path(theirs).resolve() != mine:
            return f"warning: the app runs {mine}, the evaluation was of {theirs}"
        return "the checkpoint evaluated"

    def _ground_truth(self, key: str, index: int, out: Path, notes: list[str]) -> Path | None:
        path = out / "ground_truth.glb"
        with GroundTruth(self.data, self.protocol) as gt:
            mesh = gt.mesh(key, self.split, index)
            if mesh is not None:
                what = "the GT mesh"
                verts, faces = mesh
            else:
                lo, hi = grid_bounds(gt.grid(key, self.split).protocol)
                verts, faces = voxels_to_mesh(gt.voxels(key, self.split, index), lo, hi)
                what = f"the GT voxels ({gt.grid(key, self.split).dataset})"
        if len(faces) == 0:
            notes.append(f"ground truth: {what} is empty")
            return None
        if not path.exists():
            save_glb(path, verts, faces, np.tile(np.asarray(GT_COLOUR, np.float32), (len(verts), 1)))
        notes.append(f"ground truth: {what}")
        return path

