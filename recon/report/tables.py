"""Result tables from records: the eval table (console) and the comparison's Table 1 (console,
Markdown). Every row of every table has one shape (see ``recon.evaluate``)::

    row = {"mean_iou": float, "mean_loss": float | None,
           "per_category": {name: {"iou": float, "loss": ..., "chamfer": ..., "fscore": ..., "n": int}}}

An eval record is a row plus ``baselines: {name: row}``; a comparison record has
``encoders: {name: row + parameters, steps, train_time_s}`` and ``baselines``. A coloured run's
entry (``--colour``, ``recon.colour``) also has ``mean_psnr``, ``mean_l1``, ... and
``colour_baselines: {"mean_colour": row}``: the comparison's tables then gain colour columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from recon.report.format import fmt

__all__ = ["REFERENCE_NAMES", "reference_label", "category_iou", "results_table", "colour_table", "comparison_rows",
           "TABLE1_COLUMNS", "COLOUR_COLUMNS", "has_colour", "table1_columns", "markdown_table", "comparison_table",
           "published_markdown"]

REFERENCE_NAMES = {"template": "template sphere", "mean_shape": "category-mean shape",
                   "retrieval": "retrieval (train 3D)", "oracle": "GT mesh (oracle)"}


def reference_label(name: str) -> str:
    """Display name of a reference row (``template`` -> ``template sphere``)."""
    return REFERENCE_NAMES.get(name, name)


def category_iou(row: dict[str, Any], category: str) -> float | None:
    """IoU of ``category`` in a row, None when the row has no value for it."""
    return (row.get("per_category", {}).get(category) or {}).get("iou")


def results_table(record: dict[str, Any], title: str = "3D reconstruction") -> Table:
    """The eval table: one line per category (n, silhouette loss, IoU, Chamfer, F-score and the IoU of
    every reference row), then the means."""
    refs = record.get("baselines", {})
    skipped = "; ".join(f"{reference_label(k)} {v}" for k, v in (record.get("reference_notes") or {}).items())
    caption = f"3D IoU protocol {record.get('protocol', 'exact')}" + (f"; {skipped}" if skipped else "")
    t = Table(title=title, caption=caption)
    t.add_column("category")
    for col in ("n", "sil. loss", "3D IoU", "Chamfer", "F@0.05", *(f"IoU {reference_label(r)}" for r in refs)):
        t.add_column(col, justify="right")
    for name, m in sorted(record["per_category"].items()):
        t.add_row(Text(name), fmt(m.get("n"), "count"), fmt(m.get("loss"), "loss"), fmt(m.get("iou"), "iou"),
                  fmt(m.get("chamfer"), "chamfer"), fmt(m.get("fscore"), "fscore"),
                  *(fmt(category_iou(r, name), "iou") for r in refs.values()))
    t.add_section()
    t.add_row("[bold]mean", "", fmt(record.get("mean_loss"), "loss"), f"[bold]{fmt(record.get('mean_iou'), 'iou')}",
              fmt(record.get("mean_chamfer"), "chamfer"), fmt(record.get("mean_fscore"), "fscore"),
              *(fmt(r.get("mean_iou"), "iou") for r in refs.values()))
    return t


def colour_table(record: dict[str, Any], title: str = "colour") -> Table:
    """The colour table of a coloured run's eval record (``recon.colour``): per category n, PSNR and L1 at
    the input views, PSNR at novel views, PSNR over the masks' overlap (input, novel), and the PSNRs of the
    mean-colour baseline; then the means."""
    base = record["colour_baselines"]["mean_colour"]
    t = Table(title=title, caption="rendered RGB vs the images over the union of the masks (overlap: where both "
                                   "cover); mean colour: each object's mean colour painted on the predicted mesh")
    t.add_column("category")
    cols = [("psnr", "PSNR"), ("l1", "L1"), ("psnr_novel", "PSNR novel"), ("psnr_overlap", "PSNR overlap"),
            ("psnr_overlap_novel", "PSNR overlap novel")]
    base_cols = [("psnr", "mean colour PSNR"), ("psnr_novel", "mean colour PSNR novel"),
                 ("psnr_overlap", "mean colour PSNR overlap")]
    for _, head in [("n", "n"), *cols, *base_cols]:
        t.add_column(head, justify="right")
    kind = {"l1": "loss"}
    for name, m in sorted(record["per_category"].items()):
        b = base["per_category"].get(name, {})
        t.add_row(Text(name), fmt(m.get("n"), "count"), *(fmt(m.get(k), kind.get(k, "psnr")) for k, _ in cols),
                  *(fmt(b.get(k), "psnr") for k, _ in base_cols))
    t.add_section()
    t.add_row("[bold]mean", "", *(fmt(record.get(f"mean_{k}"), kind.get(k, "psnr")) for k, _ in cols),
              *(fmt(base.get(f"mean_{k}"), "psnr") for k, _ in base_cols))
    return t


def comparison_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Table 1 rows of a comparison record, encoders first, then the reference rows. Each is
    ``{label, key (dotted path of the row in table.json), reference (bool), row (the record's row),
    parameters, encoder_parameters, steps, train_time_s, mean_loss, mean_iou}``."""
    rows = []
    for name, e in record["encoders"].items():
        mean_colour = (e.get("colour_baselines") or {}).get("mean_colour") or {}
        rows.append({"label": name, "key": f"encoders.{name}", "reference": False, "row": e,
                     "parameters": e["parameters"]["total"], "encoder_parameters": e["parameters"]["encoder"],
                     "steps": e["steps"], "train_time_s": e["train_time_s"], "mean_loss": e["mean_loss"],
                     "mean_iou": e["mean_iou"], "mean_psnr": e.get("mean_psnr"), "mean_l1": e.get("mean_l1"),
                     "mean_colour_psnr": mean_colour.get("mean_psnr"), "mean_colour_l1": mean_colour.get("mean_l1")})
    for name, b in record["baselines"].items():
        rows.append({"label": reference_label(name), "key": f"baselines.{name}", "reference": True, "row": b,
                     "parameters": None, "encoder_parameters": None, "steps": None, "train_time_s": None,
                     "mean_loss": b.get("mean_loss"), "mean_iou": b["mean_iou"], "mean_psnr": None, "mean_l1": None,
                     "mean_colour_psnr": None, "mean_colour_l1": None})
    return rows


# (column title, row field, JSON key suffix under the row, format kind)
TABLE1_COLUMNS = [("parameters (encoder)", "encoder_parameters", "parameters.encoder", "parameters"),
                  ("parameters (total)", "parameters", "parameters.total", "parameters"),
                  ("steps", "steps", "steps", "steps"),
                  ("train time (s)", "train_time_s", "train_time_s", "seconds"),
                  ("mean loss", "mean_loss", "mean_loss", "loss"),
                  ("mean IoU", "mean_iou", "mean_iou", "iou")]
# Added to Table 1 when a compared run is coloured (``has_colour``): its colour scores at the input views and
# those of its mean-colour baseline (each object's mean colour painted on that run's predicted meshes).
COLOUR_COLUMNS = [("PSNR (dB)", "mean_psnr", "mean_psnr", "psnr"),
                  ("PSNR mean colour", "mean_colour_psnr", "colour_baselines.mean_colour.mean_psnr", "psnr"),
                  ("L1", "mean_l1", "mean_l1", "loss"),
                  ("L1 mean colour", "mean_colour_l1", "colour_baselines.mean_colour.mean_l1", "loss")]


def has_colour(record: dict[str, Any]) -> bool:
    """Whether any compared run of a comparison record has colour scores (was trained with ``--colour``)."""
    return any(e.get("mean_psnr") is not None for e in record["encoders"].values())


def table1_columns(record: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Table 1's columns for a comparison record: ``TABLE1_COLUMNS``, plus ``COLOUR_COLUMNS`` when ``has_colour``."""
    return TABLE1_COLUMNS + (COLOUR_COLUMNS if has_colour(record) else [])


def _colour_note(record: dict[str, Any]) -> str:
    """What the colour columns are (empty without them)."""
    if not has_colour(record):
        return ""
    return ("PSNR, L1: the prediction rendered in its vertex colours vs the image at its input view, over the union "
            "of the two masks; mean colour: each object's mean colour painted on the same run's predicted meshes "
            "(the baseline a colour head must beat).")


def _scope(record: dict[str, Any]) -> str:
    n = record["max_per_category"]
    s = record["settings"]
    return (f"{len(record['views'])} views per object, {'all' if n is None else f'first {n}'} objects per category, "
            f"{s['iterations']} training steps, seed {s['seed']}, batch size {s['batch_size']}, lr {s['lr']}, "
            f"3D IoU protocol {record.get('protocol', 'exact')}.")


def published_markdown(record: dict[str, Any]) -> list[str]:
    """Lines of the "Published numbers" section (empty when the record has none): each published row's
    per-category IoUs on our categories and its mean over the paper's classes, with its source."""
    published, cats = record.get("published") or {}, record["categories"]
    if not published:
        return []
    lines = ["", "## Published numbers", "",
             "Same protocol (softras) and split (val) on the SoftRas/NMR ShapeNet renders; the mean is the paper's "
             "mean over its classes, not over the categories above; '-': not published or not checked.", "",
             "| method | " + " | ".join(_md(c) for c in cats) + " | mean (paper's classes) |",
             "|---|" + "---:|" * (len(cats) + 1)]
    for row in published.values():
        lines.append(f"| {row['label']} | " + " | ".join(fmt(category_iou(row, c), "iou") for c in cats)
                     + f" | {fmt(row['mean_iou'], 'iou')} ({row['classes']} classes) |")
    lines += [""] + [f"* {row['label']}: {row['source']}" for row in published.values()]
    return lines


def _md(text: str) -> str:
    """``text`` as one Markdown table cell: a name read from a dataset file may hold ``|`` or markup."""
    return " ".join(str(text).split()).replace("\\", "\\\\").replace("|", "\\|")


def markdown_table(record: dict[str, Any]) -> str:
    """Table 1 (parameters, steps, train time, mean loss, mean IoU; PSNR and L1 with their mean-colour
    baseline when ``has_colour``) and per-category IoUs as Markdown, then the published numbers when the
    record has them."""
    rows, cats, columns = comparison_rows(record), record["categories"], table1_columns(record)
    lines = [f"# Encoder comparison on {Path(record['data']).name}:{record['split']}", "", _scope(record), "",
             "## Table 1", "",
             "| method | " + " | ".join(c[0] for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for r in rows:
        lines.append(f"| {r['label']} | " + " | ".join(fmt(r[c[1]], c[3]) for c in columns) + " |")
    if has_colour(record):
        lines += ["", _colour_note(record)]
    lines += ["", "## 3D IoU per category", "",
              "| method | " + " | ".join(_md(c) for c in cats) + " | mean |", "|---|" + "---:|" * (len(cats) + 1)]
    for r in rows:
        lines.append(f"| {r['label']} | " + " | ".join(fmt(category_iou(r["row"], c), "iou") for c in cats)
                     + f" | {fmt(r['mean_iou'], 'iou')} |")
    lines += [f"* {reference_label(k)}: {v}" for k, v in (record.get("reference_notes") or {}).items()]
    lines += published_markdown(record)
    return "\n".join(lines) + "\n"


def comparison_table(record: dict[str, Any]) -> Table:
    """Table 1 (with the colour columns when ``has_colour``) and per-category IoUs as a rich Table for the console."""
    cats, columns = record["categories"], table1_columns(record)
    caption = f"3D IoU protocol {record.get('protocol', 'exact')}" + (f". {_colour_note(record)}"
                                                                      if has_colour(record) else "")
    t = Table(title=f"Encoder comparison on {Path(record['data']).name}:{record['split']}", caption=caption)
    t.add_column("method", no_wrap=True)
    for title, *_ in columns:
        t.add_column(title, justify="right")
    for c in cats:
        t.add_column(Text(f"IoU {c}"), justify="right")
    for i, r in enumerate(comparison_rows(record)):
        if i == len(record["encoders"]):
            t.add_section()
        t.add_row(Text(r["label"]), *(fmt(r[c[1]], c[3]) for c in columns),
                  *(fmt(category_iou(r["row"], c), "iou") for c in cats))
    return t
