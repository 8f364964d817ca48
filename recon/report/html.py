"""The comparison's self-contained HTML page (images inlined as data URIs; opens offline)."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Any, Sequence

from recon.report.format import fmt
from recon.report.tables import category_iou, comparison_rows, has_colour, reference_label, table1_columns
from recon.report.viewer import ViewerItem, viewer_fragment

__all__ = ["html_report"]

_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 10px}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.baseline td{color:#666}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}pre{background:#f6f6f6;padding:1em;overflow-x:auto}
figure{margin:1.5em 0}figcaption{font-size:.9em;color:#555}"""


def _data_uri(path: Path) -> str | None:
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def _cell(value: Any, kind: str, key: str) -> str:
    data_key = f" data-key='{html.escape(key)}'" if value is not None else ""
    return f"<td class='num'{data_key}>{fmt(value, kind)}</td>"


def html_report(record: dict[str, Any], out_dir: str | os.PathLike, viewer: Sequence[ViewerItem] = ()) -> str:
    """The page for a comparison record (``recon.workflows.compare``). Every number cell carries ``data-key``,
    the dotted path of its value in table.json. ``viewer``: predicted meshes shown in an interactive
    3D viewer (grouped by encoder), inlined so that the page still opens offline."""
    out = Path(out_dir)
    esc = html.escape
    rows, cats, columns = comparison_rows(record), record["categories"], table1_columns(record)
    s = record["settings"]
    n = record["max_per_category"]
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Encoder comparison</title>"
             f"<style>{_CSS}</style></head><body>",
             "<h1>Encoder comparison (Table 1 / Fig. 2)</h1>",
             f"<p>Dataset <code>{esc(record['data'])}</code>, split <b>{esc(record['split'])}</b>, "
             f"{len(record['views'])} view(s) per object ({esc(', '.join(map(str, record['views'])))}), "
             f"{'all' if n is None else f'first {n}'} objects per category. Every encoder: "
             f"{s['iterations']} steps, seed {s['seed']}, batch size {s['batch_size']}, lr {s['lr']}, "
             f"backend {esc(str(s['backend']))}, device {esc(record['device'])}, evaluated on its "
             f"{esc(s['checkpoint'])}.pt. Loss: silhouette IoU loss of the prediction rendered at its input view; "
             f"IoU: 3D IoU of the voxelized prediction (32<sup>3</sup>, protocol "
             f"<b>{esc(str(record.get('protocol', 'exact')))}</b>), mean per category, then over categories.</p>",
             "<h2>Table 1</h2><table id='table1'><tr><th>method</th>"
             + "".join(f"<th>{esc(c[0])}</th>" for c in columns) + "</tr>"]
    for r in rows:
        cls = " class='baseline'" if r["reference"] else ""
        cells = "".join(_cell(r[col], kind, f"{r['key']}.{suffix}") for _, col, suffix, kind in columns)
        parts.append(f"<tr{cls}><td>{esc(r['label'])}</td>{cells}</tr>")
    parts.append("</table>")
    if has_colour(record):
        parts.append("<p>PSNR (dB, peak 1) and L1: each prediction rendered in its predicted vertex colours against "
                     "the image at its input view, over the union of the two masks. Mean colour: each object's mean "
                     "colour over its views painted on the same run's predicted meshes and scored the same way, so "
                     "it shares the run's geometry and measures only what the colour head adds.</p>")
    parts.append("<h2>3D IoU per category</h2><table id='per-category'><tr><th>method</th>"
                 + "".join(f"<th>{esc(c)}</th>" for c in cats) + "<th>mean</th></tr>")
    for r in rows:
        cls = " class='baseline'" if r["reference"] else ""
        cells = "".join(_cell(category_iou(r["row"], c), "iou", f"{r['key']}.per_category.{c}.iou") for c in cats)
        cells += _cell(r["mean_iou"], "iou", f"{r['key']}.mean_iou")
        parts.append(f"<tr{cls}><td>{esc(r['label'])}</td>{cells}</tr>")
    parts.append("</table>")
    for name, text in (record.get("reference_notes") or {}).items():
        parts.append(f"<p>{esc(reference_label(name))}: {esc(text)}</p>")
    if record.get("published"):
        parts.append("<h2>Published numbers</h2><p>Same protocol (softras) and split (val) on the SoftRas/NMR "
                     "ShapeNet renders. The mean is the paper's mean over its classes, not over the categories above; "
                     "'-': not published or not checked.</p><table id='published'><tr><th>method</th>"
                     + "".join(f"<th>{esc(c)}</th>" for c in cats) + "<th>mean (paper's classes)</th></tr>")
        for key, row in record["published"].items():
            cells = "".join(_cell(category_iou(row, c), "iou", f"published.{key}.per_category.{c}.iou")
                            for c in cats)
            cells += _cell(row["mean_iou"], "iou", f"published.{key}.mean_iou")
            parts.append(f"<tr class='baseline'><td>{esc(row['label'])}</td>{cells}</tr>")
        parts.append("</table><ul>" + "".join(f"<li>{esc(row['label'])}: {esc(row['source'])}</li>"
                                              for row in record["published"].values()) + "</ul>")
    curves = _data_uri(out / record["curves"])
    if curves:
        parts.append(f"<h2>Training curves</h2><figure><img src='{curves}' alt='training curves'>"
                     "<figcaption>Left: training loss per logged step (faint) and its moving average. "
                     "Right: validation 3D IoU.</figcaption></figure>")
    shown = "the predicted mesh in its predicted colours" if has_colour(record) else "the predicted mesh"
    parts.append("<h2>Predictions (Fig. 2)</h2><p>The same test objects for every encoder: the input image, "
                 f"{shown} from three viewpoints, and the ground-truth voxels.</p>")
    for name, e in record["encoders"].items():
        uri = _data_uri(out / e["figure"]) if e.get("figure") else None
        if uri:
            parts.append(f"<figure><img src='{uri}' alt='{esc(name)} predictions'>"
                         f"<figcaption>{esc(name)}</figcaption></figure>")
    if viewer:
        parts.append("<h2>Predictions in 3D</h2><p>The same predictions as meshes: drag to orbit.</p>")
        parts.append(viewer_fragment(viewer))
    cmds = record["commands"]
    lines = ["# this comparison", cmds["compare"], "", "# equivalent training runs"]
    lines += list(cmds["train"].values()) + ["", "# equivalent evaluations"] + list(cmds["eval"].values())
    runs = ", ".join(f"{n}: {e['run']}" for n, e in record["encoders"].items())
    parts.append(f"<h2>Commands</h2><p>Runs in this invocation: {esc(runs)}.</p><pre>{esc(chr(10).join(lines))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
