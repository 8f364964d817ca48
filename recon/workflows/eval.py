"""``evaluate_run``: the whole of ``python -m pipelines.eval`` as one call.

Check the flags, the checkpoint, the dataset and that the outputs can be written (all before
computing), evaluate (:mod:`recon.evaluate`), add the reference rows, write the JSON and, with
figures on, the figures, meshes and viewer page (:func:`recon.report.write_eval_figures`).

The eval record: a row plus ``mean_chamfer, mean_fscore, protocol, checkpoint, encoder, parameters,
step, split, views, backend, seconds, outputs``, ``baselines: {"template": row, "mean_shape": row[,
"oracle": row]}``, ``reference_notes`` (why a reference row is missing), ``ground_truth`` (which stored
grids were scored against), ``notes`` and ``per_object``: one ``{category, object_id, view, iou}`` per
scored prediction (``mesh``: the file stem in ``outputs.meshes`` for the saved ones).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from recon.colour import colour_record
from recon.config import EvalConfig, parse_views
from recon.data.schema import validate
from recon.distributed import resolve_device
from recon.evaluate import eval_record, evaluate, reference_rows
from recon.retrieval import RETRIEVAL_NOTE
from recon.runtime import flush_denormals
from recon.io import OutputPathError, check_output_dir, check_output_file, check_writable_file, write_json
from recon.models.precision import inference_precision
from recon.render import RGBA_BACKENDS, get_renderer
from recon.report import write_eval_figures
from recon.runs import load_model, lock_holder, resolve_checkpoint, run_dir_of

__all__ = ["evaluate_run"]


def _outputs(cfg: EvalConfig, run_dir: Path) -> tuple[Path, Path | None]:
    """(JSON path, figure directory or None) of an evaluation, checked writable before any work."""
    json_path = Path(cfg.json) if cfg.json else run_dir / f"eval_{cfg.split}.json"
    flag = "--json" if cfg.json else "--json (default)"
    if json_path.is_dir():
        raise OutputPathError(f"{flag} {json_path}: is a directory, expected a file path")
    check_writable_file(json_path, flag)
    if not cfg.figures:
        return json_path, None
    fig_dir = Path(cfg.out) if cfg.out else run_dir / f"eval_{cfg.split}"
    flag = "--out" if cfg.out else "--out (default)"
    check_output_dir(fig_dir, flag)
    check_output_file(fig_dir / "predictions.png", flag)
    check_output_file(fig_dir / "index.html", flag)
    check_output_dir(fig_dir / "meshes", flag)
    return json_path, fig_dir


def evaluate_run(cfg: EvalConfig, progress: Callable[[int, int], None] | None = None,
                 note: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Everything ``python -m pipelines.eval`` does: check the flags, the checkpoint, the dataset and
    that the outputs can be written (all before computing), evaluate, add the reference rows, write
    the JSON and the figures.

    Args:
        progress: ``progress(done, total)`` objects, after each object.
        note: receives one-line remarks (what is evaluated; a run that a training is still writing).
    Returns:
        The eval record (see ``eval_record``) with ``protocol, reference_notes, checkpoint, encoder,
        parameters (encoder, decoder, total), step, split, views, backend, precision, seconds`` and ``outputs {json,
        figures, meshes, viewer}`` (paths written, None when not).
    """
    cfg.validate()
    say = note or (lambda text: None)
    flush_denormals()  # recon.runtime: subnormal floats cost microcode time and change no IoU
    device = resolve_device(cfg.device)
    ckpt = resolve_checkpoint(cfg.checkpoint)
    # train: the mean-shape reference row; the GT meshes are read for Chamfer / F-score and the oracle row
    info = validate(cfg.data, require_splits=("train", cfg.split), check_meshes=True)
    views = parse_views(cfg.views, info.num_views, "--views")
    run_dir = run_dir_of(ckpt)
    json_path, fig_dir = _outputs(cfg, run_dir)
    model, state = load_model(ckpt, device, encoder=cfg.encoder)
    precision = inference_precision(cfg.precision, state.get("precision"), device)
    model.set_precision(precision.precision)  # the encoder/decoder's; renderer and metrics stay fp32
    renderer = get_renderer(cfg.backend, image_size=info.image_size, device=str(device), impl=cfg.impl)
    holder = lock_holder(run_dir)
    if holder is not None:
        say(f"note: {run_dir} is being written by a training (PID {holder}); evaluating {ckpt.name} as it is now")
    encoder = state["config"].get("encoder")
    total = sum(min(n, cfg.max_per_category or n) for n in info.objects(cfg.split).values())
    say(f"recon eval {ckpt} (encoder={encoder}, step {state['step']}) on {cfg.data}:{cfg.split}, "
        f"{total} objects x {len(views)} views, backend={cfg.backend}, 3D IoU protocol {cfg.protocol}, "
        f"precision {precision.precision} ({precision.reason})")
    done = [0]

    def advance(k: int) -> None:
        done[0] += k
        if progress is not None:
            progress(done[0], total)

    coloured = model.colour_head is not None
    score_colours = coloured and cfg.backend in RGBA_BACKENDS
    if coloured and not score_colours:
        say(f"note: colour scores skipped: the {cfg.backend} backend has no colour render ({', '.join(RGBA_BACKENDS)} "
            f"have one)")
    t0 = time.time()
    result = evaluate(model, renderer, cfg.data, cfg.split, views=views,
                      max_per_category=cfg.max_per_category or None, device=device, full_metrics=cfg.full_metrics,
                      keep_predictions=cfg.figures, progress=advance,
                      protocol=cfg.protocol, colour_scores=score_colours)
    # a coloured run: mean_psnr ... and colour_baselines {"mean_colour": row}, moved out of per_category
    colour = colour_record(result.per_category) if score_colours else {}
    for line in result.notes:
        say(f"note: {line}")
    baselines = reference_rows(model, cfg.data, cfg.split, cfg.max_per_category or None, protocol=cfg.protocol,
                               full_metrics=cfg.full_metrics, views=views)
    reference_notes = {"retrieval": RETRIEVAL_NOTE}
    if "oracle" not in baselines:
        reference_notes["oracle"] = (f"skipped: {cfg.data} stores no ground-truth meshes (HDF5 format v1, or data "
                                     f"converted from SoftRas/NMR npz, which have none)")
        say(f"note: oracle row {reference_notes['oracle']}")
    outputs: dict[str, str | None] = {"json": str(json_path), "figures": None, "meshes": None, "viewer": None}
    record = eval_record(result, baselines, extra={
        "protocol": cfg.protocol, "reference_notes": reference_notes, "checkpoint": str(ckpt), "encoder": encoder,
        "parameters": model.num_parameters(), "step": state["step"], "split": cfg.split, "views": views,
        "backend": cfg.backend, "precision": precision.precision, "seconds": time.time() - t0, "outputs": outputs,
        **colour})
    if result.predictions and fig_dir is not None:
        colours = [p.colours for p in result.predictions] if coloured else None  # None: grey meshes
        outputs.update(write_eval_figures(result.predictions, model.faces.cpu(), fig_dir, result.per_object,
                                          title=f"{encoder}: input, prediction from 3 views, GT voxels "
                                                f"({cfg.protocol} grid)",
                                          page_title=f"{encoder} on {cfg.split}: predictions", colours=colours))
    write_json(record, json_path)
    return record
