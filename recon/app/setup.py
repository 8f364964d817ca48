"""Everything the app loads before it serves: the model, the example pictures and the evaluation to
browse, each checked at start-up so that a bad checkpoint, dataset or eval JSON is one clear error
(``CheckpointError``, ``DatasetFormatError``, ``EvalFileError``) before any page is served."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from recon.app.browse import EvalBrowser, EvalFileError, find_eval_json
from recon.app.examples import builtin_examples, dataset_examples
from recon.app.service import AppService
from recon.checkpoint import load_checkpoint
from recon.data.schema import validate

__all__ = ["AppSetup", "prepare"]


@dataclass
class AppSetup:
    """The loaded pieces: ``service`` (the model), ``examples`` (PNG paths), ``browser`` (None: no
    evaluation, ``browse_note`` says why), ``notes`` (lines to print at start) and ``allowed_paths``
    (folders the page may serve files from)."""

    service: AppService
    examples: list[Path]
    browser: EvalBrowser | None
    browse_note: str
    notes: list[str] = field(default_factory=list)
    allowed_paths: list[Path] = field(default_factory=list)


def prepare(checkpoint: str | os.PathLike, data: str | os.PathLike | None = None,
            eval_json: str | os.PathLike | None = None, device: str = "auto", precision: str = "auto") -> AppSetup:
    """Load the model and find the examples and the evaluation (see ``pipelines.app``).

    Raises:
        CheckpointError: no usable checkpoint. DatasetFormatError: ``data`` is not a usable dataset.
        EvalFileError: ``eval_json`` (given) cannot be browsed. ValueError: bad device or precision.
    """
    service = AppService.load(checkpoint, device, precision)
    try:
        notes = []
        if data is not None:
            validate(data)
        else:
            trained_on = load_checkpoint(service.checkpoint)["config"].get("data")
            if isinstance(trained_on, str) and os.path.isfile(trained_on):
                try:
                    validate(trained_on)
                    data = trained_on
                except ValueError as e:  # DatasetFormatError: the examples fall back to the built-in ones
                    notes.append(f"note: the checkpoint's training data is unusable ({e})")
        if data is not None:
            examples = dataset_examples(data, service.work_dir / "examples")
            notes.append(f"examples: test images of {data}")
        else:
            examples = builtin_examples()
            notes.append("examples: built-in test images (no dataset given and the checkpoint's is not here)")
        browser, browse_note = None, ""
        if eval_json is not None:
            browser = EvalBrowser(eval_json, data, service.work_dir / "browse", service)
        else:
            found = find_eval_json(checkpoint)
            if found is None:
                browse_note = (f"No evaluation of this run: `python -m pipelines.eval --checkpoint {checkpoint}` "
                               f"writes one (RUN/eval_test.json), or pass `--eval FILE.json`.")
            else:
                try:
                    browser = EvalBrowser(found, data, service.work_dir / "browse", service)
                except EvalFileError as e:
                    browse_note = f"The run's evaluation cannot be browsed: {e}"
        notes.append(f"browse: {browser.path}" if browser is not None else f"browse: {browse_note}")
        allowed = [service.work_dir] + ([browser.mesh_dir] if browser is not None and browser.mesh_dir else [])
        allowed += [p.parent for p in examples[:1]]
        return AppSetup(service, examples, browser, browse_note, notes, allowed)
    except BaseException:
        service.close()
        raise
