"""Encoder comparison: the study's Table 1 (mean loss, mean IoU per encoder) and Fig. 2.

Every encoder is trained with the same data, seed, batch size, learning rate and number of
steps into ``OUT/<encoder>/`` (a finished run is reused, an unfinished one resumed), then all
are evaluated on the same split with the same views, next to two reference rows (template
sphere, category-mean shape). Outputs in ``OUT``:

    table.json      per encoder: mean loss, mean IoU, per-category metrics, parameters,
                    train time (s), steps, run action; baselines; the commands used
    table.md        Table 1 and the per-category IoUs as Markdown
    curves.png      training loss and validation IoU against steps (from RUN/metrics.jsonl)
    <encoder>_predictions.png   Fig. 2: the same test objects for every encoder
    report.html     all of the above in one self-contained page (images inlined)

Train time is the wall time logged in ``metrics.jsonl`` (``time`` of the last record of each
training session, summed over resumed sessions); it includes periodic validation.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import shlex
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from recon.config import TrainConfig

__all__ = ["CompareConfig", "RunPlan", "parse_encoders", "check_config", "plan_run", "train_argv",
           "command_line", "train_seconds", "read_metrics", "plot_curves", "count_objects", "run_comparison",
           "markdown_table", "html_report", "rich_table", "fmt"]

# Experiment-defining settings: a run reused or resumed by a comparison must agree on these.
_SAME = ("encoder", "backend", "seed", "batch_size", "lr", "lambda_lap", "lambda_flat", "sigma", "decay_at", "decay")


@dataclass
class CompareConfig:
    """Comparison settings; each field is a ``python -m pipelines.compare`` flag."""

    data: str = field(default="data/synthetic.h5", metadata={"help": "HDF5 dataset"})
    out: str = field(default="runs/compare", metadata={"help": "output directory (one run per encoder inside)"})
    iterations: int = field(default=0, metadata={"help": "training steps per encoder (required)"})
    encoders: str = field(default="baseline,resnet,attention", metadata={"help": "comma-separated encoder names"})
    seed: int = field(default=0, metadata={"help": "seed for weights and data sampling (same for every encoder)"})
    batch_size: int = field(default=64, metadata={"help": "objects per step"})
    lr: float = field(default=1e-4, metadata={"help": "Adam learning rate"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N"})
    split: str = field(default="test", metadata={"help": "evaluation split: test | val"})
    views: str = field(default="all", metadata={"help": "evaluation views: all | N (evenly spaced) | comma list"})
    max_per_category: int = field(default=0, metadata={"help": "evaluate the first N objects per category (0 = all)"})
    checkpoint: str = field(default="best", metadata={"help": "evaluate best.pt (by val IoU) or last.pt: best | last"})
    figures: int = field(default=2, metadata={"help": "Fig. 2 rows per category"})
    full_metrics: bool = field(default=True, metadata={"help": "also compute Chamfer distance and F-score"})
    backend: str = field(default="softras", metadata={"help": "rendering backend: softras | kaolin | nvdiffrast"})
    impl: str = field(default="auto", metadata={"help": "softras implementation: auto | torch | cpp | cuda"})
    val_every: int = field(default=1000, metadata={"help": "validate and checkpoint every K steps"})
    val_objects: int = field(default=10, metadata={"help": "val objects per category for validation (0 = all)"})
    val_views: str = field(default="0,6,12,18", metadata={"help": "views used for periodic validation"})
    log_every: int = field(default=10, metadata={"help": "metrics.jsonl line every K steps"})
    workers: int = field(default=0, metadata={"help": "DataLoader worker processes"})
    threads: int = field(default=0, metadata={"help": "torch CPU threads (0 = torch default)"})
    tensorboard: bool = field(default=True, metadata={"help": "log to RUN/tb when tensorboard is installed"})


@dataclass
class RunPlan:
    """What to do with ``OUT/<encoder>``: ``train`` (new), ``resume`` (unfinished) or ``reuse``
    (its last.pt is at >= iterations steps). ``steps``: steps already done."""

    encoder: str
    run_dir: Path
    action: str
    steps: int
    config: TrainConfig


# -- formatting: one place, used by table.md, report.html and the console table -------------
_FORMATS = {"loss": "{:.4f}", "iou": "{:.4f}", "chamfer": "{:.4f}", "fscore": "{:.4f}", "parameters": "{:,}",
            "seconds": "{:.1f}", "steps": "{:d}"}


def fmt(value: Any, kind: str) -> str:
    """Format a table value; None / NaN -> "-"."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return _FORMATS[kind].format(int(value) if kind in ("parameters", "steps") else float(value))


# -- configuration and run planning -------------------------------------------------------
def parse_encoders(spec: str) -> list[str]:
    """``"baseline,resnet"`` -> ``["baseline", "resnet"]``; unknown names raise ValueError listing valid ones."""
    from recon.models.encoders import ENCODERS

    names = list(dict.fromkeys(x.strip() for x in spec.split(",") if x.strip()))
    bad = [n for n in names if n not in ENCODERS]
    if bad or not names:
        what = f"unknown encoder(s) {', '.join(map(repr, bad))}" if bad else "no encoder given"
        raise ValueError(f"--encoders: {what}; valid encoders: {', '.join(ENCODERS)}")
    return names


def check_config(cfg: CompareConfig) -> list[str]:
    """Validate flags and the dataset; return the encoder names. Raises ValueError naming the flag."""
    from recon.data.schema import validate
    from recon.evaluate import parse_views

    encoders = parse_encoders(cfg.encoders)
    if cfg.iterations < 1:
        raise ValueError(f"--iterations must be >= 1 (the training budget per encoder), got {cfg.iterations}")
    for name in ("batch_size", "val_every", "log_every"):
        if getattr(cfg, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(cfg, name)}")
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise ValueError(f"--lr must be a positive finite number, got {cfg.lr}")
    if min(cfg.max_per_category, cfg.figures, cfg.workers, cfg.threads, cfg.val_objects) < 0:
        raise ValueError("--max-per-category, --figures, --workers, --threads and --val-objects must be >= 0")
    if cfg.checkpoint not in ("best", "last"):
        raise ValueError(f"--checkpoint must be best or last, got {cfg.checkpoint!r}")
    if cfg.split not in ("train", "val", "test"):
        raise ValueError(f"--split must be train, val or test, got {cfg.split!r}")
    info = validate(cfg.data, require_splits=("train", "val", cfg.split))
    parse_views(cfg.views, info.num_views)
    parse_views(cfg.val_views, info.num_views)
    return encoders


def _train_config(cfg: CompareConfig, encoder: str, resume: bool) -> TrainConfig:
    shared = {f.name: getattr(cfg, f.name) for f in fields(TrainConfig) if hasattr(cfg, f.name)}
    shared.update(out=str(Path(cfg.out) / encoder), encoder=encoder, resume=resume)
    return TrainConfig(**shared)


def _same_data(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def plan_run(cfg: CompareConfig, encoder: str) -> RunPlan:
    """Decide whether ``OUT/<encoder>`` is trained, resumed or reused.

    Raises:
        ValueError: the directory holds a run whose data or settings differ from this comparison.
    """
    from recon.checkpoint import CheckpointError, load_checkpoint, step_checkpoints

    run_dir = Path(cfg.out) / encoder
    want = _train_config(cfg, encoder, resume=False)
    saved_path = run_dir / "config.json"
    has_ckpt = (run_dir / "last.pt").exists() or bool(step_checkpoints(run_dir))
    if not has_ckpt:
        return RunPlan(encoder, run_dir, "train", 0, want)
    saved = json.loads(saved_path.read_text()) if saved_path.is_file() else {}
    diff = [f"{k}={saved.get(k)!r} (asked {getattr(want, k)!r})" for k in _SAME if saved.get(k) != getattr(want, k)]
    if saved and not _same_data(str(saved.get("data")), cfg.data):
        diff.insert(0, f"data={saved.get('data')!r} (asked {cfg.data!r})")
    if diff:
        raise ValueError(f"{run_dir} holds a run with other settings: {', '.join(diff)}; "
                         f"choose another --out or matching flags")
    steps = 0
    try:
        steps = int(load_checkpoint(run_dir / "last.pt")["step"])
    except (CheckpointError, FileNotFoundError, KeyError):
        pass  # last.pt missing or corrupt: resuming picks the newest valid step checkpoint
    if steps >= cfg.iterations:
        return RunPlan(encoder, run_dir, "reuse", steps, want)
    return RunPlan(encoder, run_dir, "resume", steps, _train_config(cfg, encoder, resume=True))


def train_argv(tc: TrainConfig) -> list[str]:
    """``pipelines.train`` flags reproducing ``tc`` (fields at their defaults are left out,
    except the ones that define the comparison)."""
    default = TrainConfig()
    keep = {"data", "out", "encoder", "iterations", "seed", "batch_size", "lr"}
    argv: list[str] = []
    for f in fields(TrainConfig):
        v = getattr(tc, f.name)
        if f.name not in keep and v == getattr(default, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(v, bool):
            argv.append(flag if v else "--no-" + flag[2:])
        else:
            argv += [flag, str(v)]
    return argv


def command_line(module: str, argv: Sequence[str]) -> str:
    return f"python -m {module} {shlex.join(list(argv))}".rstrip()


def _eval_argv(cfg: CompareConfig, checkpoint: Path) -> list[str]:
    argv = ["--checkpoint", str(checkpoint), "--data", cfg.data, "--split", cfg.split, "--views", cfg.views,
            "--backend", cfg.backend, "--device", cfg.device, "--figures", str(cfg.figures)]
    if cfg.backend == "softras":
        argv += ["--impl", cfg.impl]
    if cfg.max_per_category:
        argv += ["--max-per-category", str(cfg.max_per_category)]
    if not cfg.full_metrics:
        argv.append("--no-full-metrics")
    return argv


# -- training logs ------------------------------------------------------------------------
def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of ``RUN/metrics.jsonl`` (unparsable lines, e.g. a line cut by a crash, skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict) and "step" in rec:
            out.append(rec)
    return out


def train_seconds(records: Sequence[dict[str, Any]]) -> float | None:
    """Training wall time: the last ``time`` of each session, summed (a session starts where
    ``time`` or ``step`` goes back, i.e. at a resume)."""
    total, prev_t, prev_s = 0.0, None, None
    for r in records:
        if "time" not in r:
            continue
        t, s = float(r["time"]), int(r["step"])
        if prev_t is not None and (t < prev_t or s <= prev_s):
            total += prev_t
        prev_t, prev_s = t, s
    return None if prev_t is None else total + prev_t


def _curve(records: Sequence[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of ``key``; a step logged twice (before a crash and after resuming) keeps the later value."""
    by_step = {int(r["step"]): float(r[key]) for r in records if key in r and r[key] is not None}
    steps = np.array(sorted(by_step), dtype=np.int64)
    return steps, np.array([by_step[s] for s in steps], dtype=np.float64)


def plot_curves(runs: dict[str, Path], path: str | os.PathLike) -> None:
    """Training loss (raw, and a moving average) and validation IoU against steps, one line per run."""
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recon.mesh import atomic_write_bytes

    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (name, run_dir) in enumerate(runs.items()):
        color = f"C{i}"
        recs = read_metrics(run_dir)
        steps, loss = _curve(recs, "loss")
        if len(steps):
            ax_loss.plot(steps, loss, color=color, alpha=0.25, lw=0.8)
            k = max(1, len(loss) // 20)
            smooth = np.convolve(loss, np.ones(k) / k, mode="valid")
            ax_loss.plot(steps[k - 1:], smooth, color=color, lw=1.8, label=name)
        steps, iou = _curve(recs, "val_iou")
        if len(steps):
            ax_iou.plot(steps, iou, color=color, marker="o", ms=3, lw=1.5, label=name)
    ax_loss.set(title="training loss (silhouette IoU + regularisers)", xlabel="step", ylabel="loss")
    ax_iou.set(title="validation 3D IoU", xlabel="step", ylabel="IoU")
    for ax in (ax_loss, ax_iou):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


# -- evaluation and outputs ---------------------------------------------------------------
def count_objects(cfg: CompareConfig) -> int:
    """Objects evaluated per encoder."""
    from recon.data.schema import validate

    counts = validate(cfg.data, require_splits=(cfg.split,)).objects(cfg.split)
    return sum(min(n, cfg.max_per_category or n) for n in counts.values())


def run_comparison(cfg: CompareConfig, plans: Sequence[RunPlan], command: str,
                   progress: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Evaluate the trained runs of ``plans`` and write table.json, table.md, curves.png,
    <encoder>_predictions.png and report.html into ``cfg.out``.

    Args:
        plans: one per encoder, after training (``action`` is reported as the run's origin).
        command: the command line of this comparison (shown in the report).
        progress: ``progress(encoder, k)`` after every k evaluated objects.
    Returns:
        The table.json record.
    """
    from recon.checkpoint import load_checkpoint, resolve_checkpoint
    from recon.data.schema import validate
    from recon.evaluate import evaluate, mean_shape_iou, parse_views, template_iou
    from recon.render import get_renderer
    from recon.report import figure_predictions, write_json
    from recon.mesh import atomic_write_bytes
    from recon.training import load_model, resolve_device

    out = Path(cfg.out)
    device = resolve_device(cfg.device)
    info = validate(cfg.data, require_splits=(cfg.split,))
    views = parse_views(cfg.views, info.num_views)
    mpc = cfg.max_per_category or None
    opts = {"impl": cfg.impl} if cfg.backend == "softras" else {}
    renderer = get_renderer(cfg.backend, image_size=info.image_size, device=str(device), **opts)
    entries: dict[str, Any] = {}
    template = None
    commands: dict[str, Any] = {"compare": command, "train": {}, "eval": {}}
    for plan in plans:
        ckpt = resolve_checkpoint(plan.run_dir, prefer=cfg.checkpoint)
        model, state = load_model(ckpt, device, encoder=plan.encoder)
        result = evaluate(model, renderer, cfg.data, cfg.split, views=views, max_per_category=mpc, device=device,
                          full_metrics=cfg.full_metrics, keep_predictions=cfg.figures,
                          progress=None if progress is None else (lambda k, e=plan.encoder: progress(e, k)))
        faces = model.faces.cpu()
        if template is None:  # every encoder shares the decoder's template
            template = template_iou(model.decoder.template_mesh().cpu(), faces, cfg.data, cfg.split, mpc)
        fig_name = f"{plan.encoder}_predictions.png"
        if result.predictions:
            figure_predictions(result.predictions, faces, out / fig_name,
                               title=f"{plan.encoder}: input, prediction from 3 views, GT voxels")
        records = read_metrics(plan.run_dir)
        last = plan.run_dir / "last.pt"
        steps = int(state["step"])
        if last.exists() and last.resolve() != ckpt.resolve():
            steps = int(load_checkpoint(last)["step"])
        saved_cfg = state.get("config", {})
        entries[plan.encoder] = {
            "mean_loss": result.mean_loss,
            "mean_iou": result.mean_iou,
            "mean_chamfer": result.mean("chamfer"),
            "mean_fscore": result.mean("fscore"),
            "per_category": result.per_category,
            "parameters": model.num_parameters(),
            "train_time_s": train_seconds(records),
            "steps": steps,
            "eval_checkpoint": str(ckpt),
            "eval_step": int(state["step"]),
            "run_dir": str(plan.run_dir),
            "run": {"train": "trained", "resume": "resumed", "reuse": "reused"}[plan.action],
            "reused": plan.action == "reuse",
            "figure": fig_name if result.predictions else None,
        }
        known = {f.name for f in fields(TrainConfig)}
        tc = TrainConfig(**{k: v for k, v in saved_cfg.items() if k in known}) if saved_cfg else plan.config
        tc.resume = False
        commands["train"][plan.encoder] = command_line("pipelines.train", train_argv(tc))
        commands["eval"][plan.encoder] = command_line("pipelines.eval", _eval_argv(cfg, ckpt))
        del model
    mean_shape = mean_shape_iou(cfg.data, cfg.split, mpc)
    mean = lambda d: float(np.mean(list(d.values()))) if d else float("nan")  # noqa: E731
    record: dict[str, Any] = {
        "data": cfg.data,
        "split": cfg.split,
        "views": views,
        "max_per_category": mpc,
        "categories": sorted(template or {}),
        "settings": {k: getattr(cfg, k) for k in ("iterations", "seed", "batch_size", "lr", "backend", "impl",
                                                  "device", "checkpoint")},
        "device": str(device),
        "encoders": entries,
        "baselines": {
            "template": {"iou": mean(template or {}), "per_category": template or {}},
            "mean_shape": {"iou": mean(mean_shape), "per_category": mean_shape},
        },
        "curves": "curves.png",
        "commands": commands,
    }
    record = _finite(record)
    plot_curves({p.encoder: p.run_dir for p in plans}, out / "curves.png")
    write_json(record, out / "table.json")
    atomic_write_bytes(out / "table.md", markdown_table(record).encode())
    atomic_write_bytes(out / "report.html", html_report(record, out).encode())
    return record


def _finite(obj: Any) -> Any:
    """NaN / inf -> None everywhere (strict JSON: metrics that were not computed are null)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# -- tables -------------------------------------------------------------------------------
_BASELINE_NAMES = {"template": "template sphere", "mean_shape": "category-mean shape"}


def _rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Table 1 rows: (label, key prefix, values) for every encoder then the baselines."""
    rows = []
    for name, e in record["encoders"].items():
        rows.append({"label": name, "key": f"encoders.{name}", "parameters": e["parameters"]["total"],
                     "encoder_parameters": e["parameters"]["encoder"], "steps": e["steps"],
                     "train_time_s": e["train_time_s"], "mean_loss": e["mean_loss"], "mean_iou": e["mean_iou"],
                     "per_category": {c: m.get("iou") for c, m in e["per_category"].items()}})
    for name, b in record["baselines"].items():
        rows.append({"label": _BASELINE_NAMES.get(name, name), "key": f"baselines.{name}", "parameters": None,
                     "encoder_parameters": None, "steps": None, "train_time_s": None, "mean_loss": None,
                     "mean_iou": b["iou"], "per_category": b["per_category"]})
    return rows


# (column title, row field, JSON key suffix, format kind)
_TABLE1 = [("parameters (encoder)", "encoder_parameters", "parameters.encoder", "parameters"),
           ("parameters (total)", "parameters", "parameters.total", "parameters"),
           ("steps", "steps", "steps", "steps"),
           ("train time (s)", "train_time_s", "train_time_s", "seconds"),
           ("mean loss", "mean_loss", "mean_loss", "loss"),
           ("mean IoU", "mean_iou", "mean_iou", "iou")]


def _baseline_key(row: dict[str, Any], suffix: str) -> str:
    if row["key"].startswith("baselines.") and suffix == "mean_iou":
        return f"{row['key']}.iou"
    return f"{row['key']}.{suffix}"


def markdown_table(record: dict[str, Any]) -> str:
    """Table 1 (loss, IoU, parameters, steps, train time) and per-category IoUs as Markdown."""
    rows, cats = _rows(record), record["categories"]
    n = record["max_per_category"]
    lines = [f"# Encoder comparison on {Path(record['data']).name}:{record['split']}", "",
             f"{len(record['views'])} views per object, "
             f"{'all' if n is None else f'first {n}'} objects per category, "
             f"{record['settings']['iterations']} training steps, seed {record['settings']['seed']}, "
             f"batch size {record['settings']['batch_size']}, lr {record['settings']['lr']}.", "",
             "## Table 1", "",
             "| method | " + " | ".join(c[0] for c in _TABLE1) + " |",
             "|---|" + "---:|" * len(_TABLE1)]
    for r in rows:
        lines.append(f"| {r['label']} | " + " | ".join(fmt(r[c[1]], c[3]) for c in _TABLE1) + " |")
    lines += ["", "## 3D IoU per category", "",
              "| method | " + " | ".join(cats) + " | mean |", "|---|" + "---:|" * (len(cats) + 1)]
    for r in rows:
        lines.append(f"| {r['label']} | " + " | ".join(fmt(r["per_category"].get(c), "iou") for c in cats)
                     + f" | {fmt(r['mean_iou'], 'iou')} |")
    return "\n".join(lines) + "\n"


def rich_table(record: dict[str, Any]):
    """Table 1 with per-category IoUs as a rich Table for the console."""
    from rich.table import Table

    cats = record["categories"]
    t = Table(title=f"Encoder comparison on {Path(record['data']).name}:{record['split']}")
    t.add_column("method")
    for title, *_ in _TABLE1:
        t.add_column(title, justify="right")
    for c in cats:
        t.add_column(f"IoU {c}", justify="right")
    for i, r in enumerate(_rows(record)):
        if i == len(record["encoders"]):
            t.add_section()
        t.add_row(r["label"], *(fmt(r[c[1]], c[3]) for c in _TABLE1),
                  *(fmt(r["per_category"].get(c), "iou") for c in cats))
    return t


def _data_uri(path: Path) -> str | None:
    if not path.is_file():
        return None
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;padding:4px 10px}
td.num{text-align:right;font-variant-numeric:tabular-nums}tr.baseline td{color:#666}
th{background:#f3f3f3}img{max-width:100%;border:1px solid #eee}pre{background:#f6f6f6;padding:1em;overflow-x:auto}
figure{margin:1.5em 0}figcaption{font-size:.9em;color:#555}"""


def html_report(record: dict[str, Any], out_dir: str | os.PathLike) -> str:
    """A self-contained HTML page (images inlined as data URIs, no external resources). Every
    number cell carries ``data-key``, the dotted path of its value in table.json."""
    out = Path(out_dir)
    esc = html.escape
    rows, cats = _rows(record), record["categories"]
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
             f"IoU: 3D IoU of the voxelized prediction (32<sup>3</sup>), mean per category, then over categories.</p>",
             "<h2>Table 1</h2><table id='table1'><tr><th>method</th>"
             + "".join(f"<th>{esc(c[0])}</th>" for c in _TABLE1) + "</tr>"]
    for r in rows:
        cls = " class='baseline'" if r["key"].startswith("baselines.") else ""
        cells = []
        for _, col, suffix, kind in _TABLE1:
            v = r[col]
            key = f" data-key='{esc(_baseline_key(r, suffix))}'" if v is not None else ""
            cells.append(f"<td class='num'{key}>{fmt(v, kind)}</td>")
        parts.append(f"<tr{cls}><td>{esc(r['label'])}</td>{''.join(cells)}</tr>")
    parts.append("</table>")
    parts.append("<h2>3D IoU per category</h2><table id='per-category'><tr><th>method</th>"
                 + "".join(f"<th>{esc(c)}</th>" for c in cats) + "<th>mean</th></tr>")
    for r in rows:
        cls = " class='baseline'" if r["key"].startswith("baselines.") else ""
        cells = []
        for c in cats:
            key = f"{r['key']}.per_category.{c}" + (".iou" if r["key"].startswith("encoders.") else "")
            cells.append(f"<td class='num' data-key='{esc(key)}'>{fmt(r['per_category'].get(c), 'iou')}</td>")
        cells.append(f"<td class='num' data-key='{esc(_baseline_key(r, 'mean_iou'))}'>{fmt(r['mean_iou'], 'iou')}</td>")
        parts.append(f"<tr{cls}><td>{esc(r['label'])}</td>{''.join(cells)}</tr>")
    parts.append("</table>")
    curves = _data_uri(out / record["curves"])
    if curves:
        parts.append(f"<h2>Training curves</h2><figure><img src='{curves}' alt='training curves'>"
                     "<figcaption>Left: training loss per logged step (faint) and its moving average. "
                     "Right: validation 3D IoU.</figcaption></figure>")
    parts.append("<h2>Predictions (Fig. 2)</h2><p>The same test objects for every encoder: the input image, "
                 "the predicted mesh from three viewpoints, and the ground-truth voxels.</p>")
    for name, e in record["encoders"].items():
        uri = _data_uri(out / e["figure"]) if e.get("figure") else None
        if uri:
            parts.append(f"<figure><img src='{uri}' alt='{esc(name)} predictions'>"
                         f"<figcaption>{esc(name)}</figcaption></figure>")
    cmds = record["commands"]
    lines = ["# this comparison", cmds["compare"], "", "# equivalent training runs"]
    lines += list(cmds["train"].values()) + ["", "# equivalent evaluations"] + list(cmds["eval"].values())
    runs = ", ".join(f"{n}: {e['run']}" for n, e in record["encoders"].items())
    parts.append(f"<h2>Commands</h2><p>Runs in this invocation: {esc(runs)}.</p><pre>{esc(chr(10).join(lines))}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
