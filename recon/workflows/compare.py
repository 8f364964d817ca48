"""Encoder comparison: the study's Table 1 (mean loss, mean IoU per encoder) and Fig. 2.

Every encoder is trained with the same ``TrainConfig`` (only ``encoder`` and ``out`` differ)
into ``OUT/<encoder>/`` (a finished run is reused, an unfinished one resumed), then each is
evaluated by ``recon.workflows.eval.evaluate_run`` on the same split and views. Outputs in ``OUT``:

    table.json      per encoder: its eval row (mean loss, mean IoU, per-category metrics) plus
                    parameters, train time (s), steps, run action; reference rows; commands
    table.md        Table 1 and the per-category IoUs as Markdown
    curves.png      training loss and validation IoU against steps (from RUN/metrics.jsonl)
    <encoder>_predictions.png   Fig. 2: the same test objects for every encoder
    report.html     all of the above in one self-contained page (images inlined)

Train time is the wall time logged in ``metrics.jsonl`` (``time`` of the last record of each
training session, summed over resumed sessions); it includes periodic validation.

Presets (``PRESETS``, ``--preset NAME``) are named sets of flag values; explicit flags override them:

    softras-shapenet  SoftRas's examples/recon schedule on the 13 ShapeNet classes of the SoftRas/NMR
                      data (``pipelines.convert softras``): 250k steps, batch 64, lr 1e-4, lambda_lap 5e-3,
                      lambda_flat 5e-4, sigma 1e-4, lr and sigma x0.3 from step 150k, dist_eps 1e-10, the
                      three encoders; scored like SoftRas's test.py: protocol softras-iou, split val, the last
                      checkpoint (SoftRas evaluates its final model; picking best.pt on val would select on the
                      evaluation split). The report puts the published numbers (``recon.published``) beside ours.
    report-6          the same on six classes (see ``REPORT6_CLASSES`` for which and why).
    demo              the training of ``make demo`` for every encoder, at a fixed length: 4000 steps (about
                      what its default budget reaches on a 2-core CPU), batch 16, lr 5e-4, val every 1000.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from recon.checkpoint import CheckpointError, load_checkpoint
from recon.colour import COLOUR_METRICS
from recon.config import CompareConfig, EvalConfig, TrainConfig, parse_views
from recon.data.dataset import split_categories
from recon.data.schema import DatasetInfo, validate
from recon.ops.voxelize import SOFTRAS_IOU
from recon.distributed import resolve_device
from recon.errors import ConfigError, InputError
from recon.io import atomic_path, atomic_write_bytes, check_output_dir, write_json
from recon.workflows.eval import evaluate_run
from recon.published import published_rows
from recon.report import finite, html_report, markdown_table, plot_curves, viewer_items_from_meshes
from recon.runs import read_metrics, resolve_checkpoint, step_checkpoints
from recon.training import TrainHooks, train

__all__ = ["SOFTRAS_CLASSES", "REPORT6_CLASSES", "PRESETS", "preset_defaults", "RunPlan", "plan_run",
           "train_seconds", "check_compare_inputs", "check_classes", "eval_config", "command_line", "run_comparison"]

# Experiment-defining settings: a run reused or resumed by a comparison must agree on these.
_SAME = ("encoder", "backend", "seed", "batch_size", "lr", "lambda_lap", "lambda_flat", "sigma", "eps", "decay_at",
         "decay", "lr_schedule", "colour", "colour_head", "lambda_colour")
# Values of settings added after runs were first written, as those runs used them (absent from their config.json).
_BEFORE_FIELD = {"eps": 1e-4, "colour": False, "colour_head": "latent", "lambda_colour": 1.0, "lr_schedule": "step",
                 "precision": "fp32"}

# SoftRas examples/recon/train.py CLASS_IDS_ALL: the 13 ShapeNet classes of the SoftRas/NMR data.
SOFTRAS_CLASSES = ("02691156", "02828884", "02933112", "02958343", "03001627", "03211117", "03636649", "03691459",
                   "04090263", "04256520", "04379243", "04401088", "04530566")
# The reproduced CS482/682 report ("Self-Supervised 3D Shape Reconstruction from Single-View 2D Images", 2023)
# used six classes, but the report is not available here, so which six could not be checked. We chose
# airplane, bench, car, chair, lamp and table: the six categories of the embedded synthetic dataset, which
# was built to mirror the study, so report-6 on ShapeNet lines up category for category with our default data.
REPORT6_CLASSES = ("02691156", "02828884", "02958343", "03001627", "03636649", "04379243")
_SOFTRAS_SCHEDULE: dict[str, Any] = {"iterations": 250_000, "batch_size": 64, "lr": 1e-4, "lambda_lap": 5e-3,
                                     "lambda_flat": 5e-4, "sigma": 1e-4, "decay_at": 0.6, "decay": 0.3, "eps": 1e-10,
                                     "encoders": "baseline,resnet,attention", "protocol": SOFTRAS_IOU, "split": "val",
                                     "checkpoint": "last"}
# preset name -> flag values (dest names of pipelines.compare's flags)
PRESETS: dict[str, dict[str, Any]] = {
    "softras-shapenet": {**_SOFTRAS_SCHEDULE, "classes": ",".join(SOFTRAS_CLASSES)},
    "report-6": {**_SOFTRAS_SCHEDULE, "classes": ",".join(REPORT6_CLASSES)},
    "demo": {"iterations": 4000, "batch_size": 16, "lr": 5e-4, "val_every": 1000},
}
# presets whose data are the SoftRas/NMR ShapeNet renders, so that published numbers can stand beside ours
_PUBLISHED_PRESETS = ("softras-shapenet", "report-6")


def preset_defaults(name: str) -> dict[str, Any]:
    """The flag values of preset ``name`` (plus ``preset``); ValueError listing the presets for an unknown one."""
    if name not in PRESETS:
        raise ConfigError(f"--preset {name!r} unknown; valid presets: {', '.join(PRESETS)}")
    return {**PRESETS[name], "preset": name}


@dataclass
class RunPlan:
    """What to do with ``OUT/<encoder>``: ``train`` (new), ``resume`` (unfinished) or ``reuse``
    (its last.pt is at >= iterations steps). ``steps``: steps already done."""

    encoder: str
    run_dir: Path
    action: str
    steps: int
    config: TrainConfig


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
    want = cfg.train_config(encoder)
    run_dir = Path(want.out)
    has_ckpt = (run_dir / "last.pt").exists() or bool(step_checkpoints(run_dir))
    if not has_ckpt:
        return RunPlan(encoder, run_dir, "train", 0, want)
    saved_path = run_dir / "config.json"
    saved = _read_json(saved_path) if saved_path.is_file() else {}
    diff = [f"{k}={saved.get(k, _BEFORE_FIELD.get(k))!r} (asked {getattr(want, k)!r})" for k in _SAME
            if saved.get(k, _BEFORE_FIELD.get(k)) != getattr(want, k)]
    saved_precision = saved.get("precision", _BEFORE_FIELD["precision"])
    if saved and want.precision != "auto" and saved_precision != want.precision:  # auto: resuming keeps the run's
        diff.append(f"precision={saved_precision!r} (asked {want.precision!r})")
    if saved and not _same_data(str(saved.get("data")), want.data):
        diff.insert(0, f"data={saved.get('data')!r} (asked {want.data!r})")
    if diff:
        raise InputError(f"{run_dir} holds a run with other settings: {', '.join(diff)}; "
                         f"choose another --out or matching flags")
    steps = 0
    try:
        steps = int(load_checkpoint(run_dir / "last.pt")["step"])
    except (CheckpointError, KeyError):
        pass  # last.pt missing or corrupt: resuming picks the newest valid step checkpoint
    if steps >= want.iterations:
        return RunPlan(encoder, run_dir, "reuse", steps, want)
    return RunPlan(encoder, run_dir, "resume", steps, dataclasses.replace(want, resume=True))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable run config ({e})") from None
    return raw if isinstance(raw, dict) else {}


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


def check_compare_inputs(cfg: CompareConfig) -> None:
    """The files of a comparison, before any training: ``--out`` can be written, the dataset has
    the splits it needs in every category (and exactly ``--classes``), the views fit it."""
    check_output_dir(cfg.out, "--out")
    info = validate(cfg.train.data, require_splits=("train", "val", cfg.split), check_meshes=True)
    split_categories(info, "train")
    if cfg.classes:
        check_classes(info, cfg.classes, cfg.preset)
    parse_views(cfg.views, info.num_views, "--views")
    parse_views(cfg.train.val_views, info.num_views, "--val-views")


def check_classes(info: DatasetInfo, classes: str, preset: str | None) -> None:
    """The dataset holds exactly the categories of ``--classes`` (keys or names), else a one-line error."""
    wanted = [c.strip() for c in classes.split(",") if c.strip()]
    have = {key: name for key, name in info.categories.items()}
    missing = [c for c in wanted if c not in have and c not in have.values()]
    extra = [k for k, n in have.items() if k not in wanted and n not in wanted]
    if missing or extra:
        what = (f"lacks {', '.join(missing)}" if missing else "") + ("; " if missing and extra else "") + \
            (f"also holds {', '.join(f'{k} ({have[k]})' for k in extra)}" if extra else "")
        source = f"--preset {preset}" if preset else "--classes"
        raise InputError(f"{info.path}: {source} needs exactly the categories {','.join(wanted)}; the dataset {what} "
                         f"(convert with: python -m pipelines.convert softras --src DIR --out FILE --classes "
                         f"{','.join(wanted)})")


def eval_config(cfg: CompareConfig, plan: RunPlan) -> EvalConfig:
    """How a comparison evaluates one run: its ``--checkpoint best|last``, the comparison's split,
    views and metrics; the eval JSON and figures go into the run directory as ``pipelines.eval``'s would."""
    ckpt = resolve_checkpoint(plan.run_dir, prefer=cfg.checkpoint)
    return EvalConfig(checkpoint=str(ckpt), data=cfg.train.data, split=cfg.split, views=cfg.views,
                      backend=cfg.train.backend, impl=cfg.train.impl, protocol=cfg.protocol, encoder=plan.encoder,
                      device=cfg.train.device, precision=cfg.train.precision,
                      max_per_category=cfg.max_per_category, full_metrics=cfg.full_metrics,
                      figures=cfg.figures)


def command_line(module: str, cfg: Any, always: Sequence[str] = ()) -> str:
    """The command reproducing a config (a dataclass whose fields are ``module``'s flags): fields
    at their defaults are left out except those named in ``always``. For display only."""
    default = type(cfg)()
    argv: list[str] = []
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if v is None or (f.name not in always and v == getattr(default, f.name)):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(v, bool):
            argv.append(flag if v else "--no-" + flag[2:])
        else:
            argv += [flag, str(v)]
    return f"python -m {module} {shlex.join(argv)}".rstrip()


def _copy(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def run_comparison(cfg: CompareConfig, train_hooks: Callable[[RunPlan], TrainHooks] | None = None,
                   progress: Callable[[str, int, int], None] | None = None,
                   note: Callable[[str], None] | None = None, command: str = "") -> dict[str, Any]:
    """Plan, train (or resume / reuse) and evaluate every encoder of ``cfg``; write table.json,
    table.md, curves.png, <encoder>_predictions.png and report.html into ``cfg.out``.

    Args:
        train_hooks: the ``TrainHooks`` to train a plan with (progress bars); default: silent.
        progress: ``progress(encoder, done, total)`` evaluated objects.
        note: one-line remarks (what is reused / resumed, runs being written by another process).
        command: the command line of this comparison (shown in the report).
    Returns:
        The table.json record.
    """
    encoders = cfg.validate()
    check_compare_inputs(cfg)
    say = note or (lambda text: None)
    preset = f" (preset {cfg.preset})" if cfg.preset else ""
    say(f"recon compare{preset} {', '.join(encoders)} on {cfg.train.data}: {cfg.train.iterations} steps each, seed "
        f"{cfg.train.seed}, batch size {cfg.train.batch_size}, lr {cfg.train.lr}, 3D IoU protocol {cfg.protocol} on "
        f"{cfg.split} -> {cfg.out}")
    plans = [plan_run(cfg, e) for e in encoders]  # check every run directory before training any
    for plan in plans:
        if plan.action == "reuse":
            say(f"{plan.encoder}: reusing {plan.run_dir} (step {plan.steps} >= {cfg.train.iterations})")
            continue
        if plan.action == "resume":
            say(f"{plan.encoder}: resuming {plan.run_dir} from step {plan.steps}")
        train(plan.config, train_hooks(plan) if train_hooks else None)
    out = Path(cfg.out)
    entries: dict[str, Any] = {}
    baselines: dict[str, Any] = {}
    reference_notes: dict[str, str] = {}
    views: list[int] = []
    commands: dict[str, Any] = {"compare": command, "train": {}, "eval": {}}
    viewer = []
    for plan in plans:
        ecfg = eval_config(cfg, plan)
        rec = evaluate_run(ecfg, note=say, progress=None if progress is None else
                           (lambda done, total, e=plan.encoder: progress(e, done, total)))
        baselines = baselines or rec["baselines"]  # the same for every encoder (shared template and data)
        reference_notes = reference_notes or rec.get("reference_notes", {})
        views = rec["views"]
        fig_name = None
        if rec["outputs"].get("figures"):
            fig_name = f"{plan.encoder}_predictions.png"
            _copy(Path(rec["outputs"]["figures"]), out / fig_name)
        if rec["outputs"].get("meshes"):
            viewer += viewer_items_from_meshes(rec["outputs"]["meshes"], page_dir=out, group=plan.encoder)
        last = plan.run_dir / "last.pt"
        steps = int(load_checkpoint(last)["step"]) if last.exists() else int(rec["step"])
        entries[plan.encoder] = {
            **{k: rec[k] for k in ("mean_loss", "mean_iou", "mean_chamfer", "mean_fscore", "per_category")},
            # a coloured run (--colour): its colour scores and mean-colour baseline row (recon.colour)
            **{k: rec[k] for k in (*(f"mean_{m}" for m in COLOUR_METRICS), "colour_baselines") if k in rec},
            "parameters": rec["parameters"],
            "train_time_s": train_seconds(read_metrics(plan.run_dir)),
            "steps": steps,
            "eval_checkpoint": rec["checkpoint"],
            "eval_step": int(rec["step"]),
            "eval_json": rec["outputs"]["json"],
            "run_dir": str(plan.run_dir),
            "run": {"train": "trained", "resume": "resumed", "reuse": "reused"}[plan.action],
            "reused": plan.action == "reuse",
            "figure": fig_name,
        }
        tc = dataclasses.replace(plan.config, resume=False)
        commands["train"][plan.encoder] = command_line("pipelines.train", tc, always=("data", "out", "encoder",
                                                                                       "iterations", "seed",
                                                                                       "batch_size", "lr"))
        commands["eval"][plan.encoder] = command_line("pipelines.eval", ecfg, always=("checkpoint", "data", "split"))
    categories = sorted(next(iter(entries.values()))["per_category"]) if entries else []
    record: dict[str, Any] = finite({
        "data": cfg.train.data,
        "preset": cfg.preset,
        "protocol": cfg.protocol,
        "split": cfg.split,
        "views": views,
        "max_per_category": cfg.max_per_category or None,
        "categories": categories,
        "settings": {"iterations": cfg.train.iterations, "seed": cfg.train.seed, "batch_size": cfg.train.batch_size,
                     "lr": cfg.train.lr, "lambda_lap": cfg.train.lambda_lap, "lambda_flat": cfg.train.lambda_flat,
                     "sigma": cfg.train.sigma, "eps": cfg.train.eps, "decay_at": cfg.train.decay_at,
                     "decay": cfg.train.decay, "backend": cfg.train.backend, "impl": cfg.train.impl,
                     "device": cfg.train.device, "checkpoint": cfg.checkpoint},
        "device": str(resolve_device(cfg.train.device)),
        "encoders": entries,
        "baselines": baselines,
        "reference_notes": reference_notes,
        "published": published_rows(categories) if cfg.preset in _PUBLISHED_PRESETS else {},
        "curves": "curves.png",
        "commands": commands,
    })
    plot_curves({p.encoder: read_metrics(p.run_dir) for p in plans}, out / "curves.png")
    write_json(record, out / "table.json")
    atomic_write_bytes(out / "table.md", markdown_table(record).encode())
    atomic_write_bytes(out / "report.html", html_report(record, out, viewer).encode())
    return record
