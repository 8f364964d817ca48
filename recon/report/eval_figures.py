"""The figures of one evaluation: the predictions PNG, one mesh file per saved prediction and the
3D viewer page, written under one folder (``recon.workflows.eval.evaluate_run`` calls this)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch

from recon.evaluate import Prediction
from recon.report.figures import figure_predictions, prediction_mesh_name, save_prediction_meshes
from recon.report.viewer import viewer_items, write_viewer_page

__all__ = ["write_eval_figures"]


def write_eval_figures(predictions: Sequence[Prediction], faces: torch.Tensor, fig_dir: str | os.PathLike,
                       per_object: list[dict[str, Any]], title: str, page_title: str,
                       colours: Sequence[torch.Tensor] | None = None) -> dict[str, str]:
    """Write ``predictions.png``, ``meshes/`` and ``index.html`` under ``fig_dir``.

    Args:
        predictions: the kept predictions (``recon.evaluate.EvalResult.predictions``).
        faces: (F, 3) int64 template faces.
        per_object: the eval record's list; each saved prediction's entry gains ``mesh`` (its file stem).
        title, page_title: of the PNG and of the viewer page.
        colours: per prediction (V, 3) vertex colours, or None for grey meshes.
    Returns:
        ``{"figures", "meshes", "viewer"}``: the paths written.
    """
    fig_dir = Path(fig_dir)
    figure_predictions(predictions, faces, fig_dir / "predictions.png", title=title)
    save_prediction_meshes(predictions, faces, fig_dir / "meshes", colours=colours)
    for p in predictions:  # each saved mesh names its per_object record, and the record its mesh
        if p.record >= 0:
            per_object[p.record]["mesh"] = prediction_mesh_name(p.name, p.object_id, p.view)
    items = viewer_items(predictions, faces, colours=colours, mesh_dir=fig_dir / "meshes", page_dir=fig_dir)
    write_viewer_page(items, fig_dir / "index.html", page_title)
    return {"figures": str(fig_dir / "predictions.png"), "meshes": str(fig_dir / "meshes"),
            "viewer": str(fig_dir / "index.html")}
