"""The run directory of a training, and everything that reads or writes it.

    RUN/config.json             the TrainConfig (recon.config.save_config)
    RUN/metrics.jsonl           one JSON record per logged step (``MetricsLog``, ``read_metrics``)
    RUN/checkpoints/step-N.pt   the last ``keep`` step checkpoints (``save_step_checkpoint``)
    RUN/last.pt                 symlink to the newest step checkpoint
    RUN/best.pt                 the weights with the best validation IoU
    RUN/tb/                     TensorBoard events (optional)
    RUN/.lock                   held (``fcntl.flock``) while a training writes RUN (``lock_run``)

Crash safety: each file is written atomically (``recon.checkpoint.save_checkpoint``), a step
checkpoint is published before older ones are rotated away, ``--resume`` picks the newest
checkpoint that loads (``find_resume_checkpoint``), renames corrupt ones ``*.corrupt`` and deletes
temp files of killed saves (``clean_run_dir``), and ``MetricsLog`` drops the records a killed run
wrote after its last checkpoint.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from recon.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from recon.errors import InputError
from recon.io import atomic_write_bytes, json_text
from recon.models import Reconstructor

__all__ = ["CKPT_DIR", "METRICS_FILE", "LOCK_FILE", "RunLockedError", "step_checkpoints", "latest_valid_checkpoint",
           "find_resume_checkpoint", "clean_run_dir", "quarantine", "remove_stale_temps", "resolve_checkpoint",
           "run_dir_of", "save_step_checkpoint", "save_best_checkpoint", "check_resumable", "resume_differences",
           "load_model", "MetricsLog", "read_metrics",
           "RunLock", "lock_run", "lock_holder"]

CKPT_DIR = "checkpoints"
METRICS_FILE = "metrics.jsonl"
LOCK_FILE = ".lock"
_STEP_RE = re.compile(r"^step-(\d+)\.pt$")
_TEMP_RE = re.compile(r"^\..+\.tmp$")


# -- checkpoints of a run -----------------------------------------------------------------
def step_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``[(step, path)]`` of ``RUN/checkpoints/step-*.pt``, newest first."""
    d = Path(run_dir) / CKPT_DIR
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _STEP_RE.match(p.name))]
    return sorted(found, reverse=True)


def find_resume_checkpoint(run_dir: str | os.PathLike, map_location: str | torch.device = "cpu"
                           ) -> tuple[tuple[Path, dict[str, Any]] | None, list[tuple[Path, str]]]:
    """The newest step checkpoint that loads, and ``(path, reason)`` of every newer one that did not.

    Returns:
        ``((path, state) or None, skipped)``; nothing is renamed or warned about (``clean_run_dir`` does that).
    """
    skipped: list[tuple[Path, str]] = []
    for _, path in step_checkpoints(run_dir):
        try:
            return (path, load_checkpoint(path, map_location)), skipped
        except CheckpointError as e:
            skipped.append((path, str(e)))
    return None, skipped


def latest_valid_checkpoint(run_dir: str | os.PathLike, map_location: str | torch.device = "cpu",
                            skipped: list[tuple[Path, str]] | None = None) -> tuple[Path, dict[str, Any]] | None:
    """Newest step checkpoint that loads; corrupt ones are skipped with a warning.

    Args:
        skipped: if given, ``(path, reason)`` of every skipped checkpoint is appended to it.
    """
    found, bad = find_resume_checkpoint(run_dir, map_location)
    for path, reason in bad:
        warnings.warn(f"skipping corrupt checkpoint: {reason}", stacklevel=2)
    if skipped is not None:
        skipped.extend(bad)
    return found


def quarantine(path: str | os.PathLike) -> Path:
    """Rename a corrupt checkpoint to ``<name>.corrupt`` (kept for inspection, never picked again,
    never deleted by the keep-last-K rotation). Returns the new path."""
    path = Path(path)
    target = path.with_name(path.name + ".corrupt")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.corrupt{n}")
        n += 1
    os.replace(path, target)
    return target


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Delete ``.<name>.*.tmp`` files left in ``directory`` by a save that was killed midway
    (they are never complete: the rename that would have published them did not happen)."""
    d = Path(directory)
    removed = []
    if d.is_dir():
        for p in d.iterdir():
            if _TEMP_RE.match(p.name) and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def clean_run_dir(run_dir: str | os.PathLike, skipped: list[tuple[Path, str]]) -> list[tuple[Path, Path, str]]:
    """After a crash: quarantine the ``skipped`` (corrupt) checkpoints and delete stale temp files.

    Returns:
        ``(old path, new path, reason)`` of each quarantined checkpoint.
    """
    moved = [(path, quarantine(path), reason) for path, reason in skipped]
    remove_stale_temps(Path(run_dir) / CKPT_DIR)
    remove_stale_temps(run_dir)
    return moved


def resolve_checkpoint(spec: str | os.PathLike, prefer: str = "best") -> Path:
    """A checkpoint file from a file path or a run directory (``<prefer>.pt``, ``best.pt``, ``last.pt``,
    else the newest step checkpoint)."""
    p = Path(spec)
    if p.is_file():
        return p
    if p.is_dir():
        for name in (f"{prefer}.pt", "best.pt", "last.pt"):
            if (p / name).is_file():
                return p / name
        steps = step_checkpoints(p)
        if steps:
            return steps[0][1]
        raise CheckpointError(f"{p}: run directory has no checkpoint (best.pt, last.pt or checkpoints/step-*.pt)")
    raise CheckpointError(f"{p}: no such checkpoint file or run directory")


def run_dir_of(checkpoint: str | os.PathLike) -> Path:
    """The run directory a checkpoint file belongs to (``RUN/x.pt`` or ``RUN/checkpoints/step-N.pt``)."""
    parent = Path(checkpoint).parent
    return parent.parent if parent.name == CKPT_DIR else parent


def save_step_checkpoint(run_dir: str | os.PathLike, state: dict[str, Any], keep: int) -> Path:
    """Write ``RUN/checkpoints/step-N.pt`` (N = ``state["step"]``), point ``RUN/last.pt`` at it and
    keep only the newest ``keep`` step checkpoints. Each stage is atomic; a kill at any moment
    leaves a valid ``last.pt`` (at worst one checkpoint too many). Returns the checkpoint path."""
    run_dir = Path(run_dir)
    name = f"step-{int(state['step']):08d}.pt"
    save_checkpoint(state, run_dir / CKPT_DIR / name)
    tmp = run_dir / ".last.pt.link"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(os.path.join(CKPT_DIR, name), tmp)
    os.replace(tmp, run_dir / "last.pt")
    # only after the new checkpoint is durable
    for _, old in step_checkpoints(run_dir)[max(keep, 1):]:
        old.unlink(missing_ok=True)
    return run_dir / CKPT_DIR / name


def save_best_checkpoint(run_dir: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``RUN/best.pt`` atomically. Returns its path."""
    path = Path(run_dir) / "best.pt"
    save_checkpoint(state, path)
    return path


def check_resumable(path: Path, state: dict[str, Any], encoder: str) -> None:
    """Raise ``CheckpointError`` unless ``state`` (loaded from ``path``) can continue a training of ``encoder``."""
    enc = state["config"].get("encoder")
    if enc != encoder:
        raise CheckpointError(f"{path}: checkpoint was trained with encoder {enc!r}, not {encoder!r}")
    if "optimizer" not in state or "torch_rng" not in state:
        raise CheckpointError(f"{path}: not a training checkpoint (no optimizer / RNG state); it cannot be resumed")


# Settings whose change on --resume is harmless (where and how fast, not what is computed).
# decay_step: like iterations (which moves decay_at x iterations), the end of the plan; a clock-steered
# run (recon.budget) moves it until it is reached, so config.json and an older checkpoint may differ.
_RESUME_FREE = {"resume", "out", "data", "iterations", "decay_step", "device", "workers", "tensorboard", "log_every",
                "val_every", "val_objects", "val_views", "keep", "max_bad_steps", "threads", "impl"}


def resume_differences(state: dict[str, Any], config: dict[str, Any], world_size: int) -> list[str]:
    """The settings of ``config`` (a TrainConfig as a dict) and ``world_size`` that differ from the
    checkpoint ``state``'s and change what is computed (``"lr 0.001 -> 0.002"``, ...)."""
    old = state["config"]
    changed = [f"{k} {old[k]!r} -> {v!r}" for k, v in config.items()
               if k in old and old[k] != v and k not in _RESUME_FREE]
    if state.get("world_size", world_size) != world_size:
        changed.append(f"world size {state['world_size']} -> {world_size} (data stream changes)")
    return changed


def load_model(checkpoint: str | os.PathLike, device: torch.device | str = "cpu",
               encoder: str | None = None) -> tuple[Reconstructor, dict[str, Any]]:
    """Rebuild the model of a checkpoint, in eval mode on ``device``.

    Args:
        encoder: if given, must match the checkpoint's encoder (else ``CheckpointError``).
    Returns:
        ``(model, state)``, ``state`` being the checkpoint dict (``config``, ``step``, ...).
    """
    state = load_checkpoint(checkpoint, map_location="cpu")
    ck_enc = state["config"].get("encoder", "baseline")
    if encoder is not None and encoder != ck_enc:
        raise CheckpointError(f"{checkpoint}: checkpoint was trained with encoder {ck_enc!r}, "
                              f"but encoder {encoder!r} was requested")
    cfg = state["config"]
    colour = cfg.get("colour_head", "latent") if cfg.get("colour") else None  # runs without --colour: None
    try:
        model = Reconstructor(ck_enc, colour=colour)
    except ValueError as e:
        raise CheckpointError(f"{checkpoint}: {e}") from None
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{checkpoint}: weights do not fit encoder {ck_enc!r}: "
                              f"{_state_dict_problem(e)}") from None
    return model.to(device).eval(), state


def _state_dict_problem(e: RuntimeError, shown: int = 2, width: int = 300) -> str:
    """torch's ``load_state_dict`` error as one line: its first ``shown`` problems (a size mismatch
    names the tensor and both shapes; missing / unexpected keys list them), each cut at ``width``
    characters, and how many more there are. Its first line alone ("Error(s) in loading
    state_dict for Reconstructor:") says nothing useful."""
    lines = [" ".join(x.split()) for x in str(e).splitlines()]
    problems = [x for x in lines[1:] if x] or lines[:1]
    text = "; ".join(x if len(x) <= width else x[:width - 3] + "..." for x in problems[:shown])
    more = len(problems) - shown
    return text + (f"; and {more} more problem(s)" if more > 0 else "")


# -- metrics.jsonl ------------------------------------------------------------------------
def _upgrade(rec: dict[str, Any]) -> dict[str, Any]:
    """Older runs logged the silhouette IoU *loss* of a training step as ``iou``; it is ``iou_loss`` now."""
    if "iou" in rec and "iou_loss" not in rec:
        rec = dict(rec)
        rec["iou_loss"] = rec.pop("iou")
    return rec


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of ``RUN/metrics.jsonl`` in file order; unparsable lines (e.g. one cut short by a
    crash) are skipped, and an old ``iou`` field is read as ``iou_loss``."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        try:
            rec = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(rec, dict) and "step" in rec:
            out.append(_upgrade(rec))
    return out


class MetricsLog:
    """Writes ``RUN/metrics.jsonl`` (+ TensorBoard under ``RUN/tb`` when installed and wanted).

    ``enabled=False`` (ranks other than 0) makes every method a no-op. A run that starts at
    ``start_step`` (0, or the step it resumed from) first drops the records of later steps, which a
    killed run wrote after its last checkpoint and the resumed run writes again: the file never
    holds a step twice, nor a line cut short by a kill.
    """

    def __init__(self, run_dir: str | os.PathLike, enabled: bool = True, tensorboard: bool = False,
                 start_step: int = 0):
        self.enabled = enabled
        self.path = Path(run_dir) / METRICS_FILE
        self.tb = None
        if not enabled:
            return
        self._truncate(start_step)
        if tensorboard:
            try:  # an optional extra, and a slow import: only when wanted
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                return
            # purge_step hides the killed run's events after the checkpoint, as above
            self.tb = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=start_step + 1 if start_step else None)

    def _truncate(self, step: int) -> None:
        if not self.path.is_file():
            return
        raw = self.path.read_bytes()
        kept = []
        for line in raw.splitlines(keepends=True):
            try:
                rec = json.loads(line)
            except (ValueError, UnicodeDecodeError):  # a line cut short by a kill
                continue
            if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= step \
                    and line.endswith(b"\n"):
                kept.append(line)
        new = b"".join(kept)
        if new != raw:
            atomic_write_bytes(self.path, new)

    def log(self, record: dict[str, Any]) -> None:
        """Append one record (it must have an int ``step``); finite numbers also go to TensorBoard."""
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json_text(record, indent=None) + "\n")  # strict: a NaN loss is logged as null + a note
        if self.tb is not None:
            step = record["step"]
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)

    def images(self, step: int, batch: dict[str, torch.Tensor], renders: torch.Tensor) -> None:
        """Inputs ``batch["image_a"]`` (B, 4, S, S), their alpha and ``renders`` (>=B, S, S) to TensorBoard."""
        if self.tb is None:
            return
        n = min(4, batch["image_a"].shape[0])
        self.tb.add_images("input", batch["image_a"][:n, :3].clamp(0, 1), step)
        self.tb.add_images("reference_alpha", batch["image_a"][:n, 3:4], step)
        self.tb.add_images("rendered", renders[:n, None].clamp(0, 1), step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


# -- the run lock -------------------------------------------------------------------------
class RunLockedError(InputError):
    """Another live process is writing the run directory."""


class RunLock:
    """An exclusive ``fcntl.flock`` on ``RUN/.lock`` with the holder's PID in the file.

    The OS drops the lock when the process ends, however it ends (even SIGKILL): a stale
    ``.lock`` file is harmless and is simply locked again by the next training.
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._file: Any = None  # the open lock file; garbage collection closes it, releasing the lock

    def acquire(self) -> "RunLock":
        """Take the lock (creating RUN if needed) or raise ``RunLockedError`` naming the holder's PID."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+b")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            f.close()
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            pid = lock_holder(self.run_dir)
            who = f"PID {pid}" if pid else "another process"
            raise RunLockedError(f"{self.run_dir}: another training ({who}) is writing this run directory; "
                                 f"wait for it to finish or choose another --out") from None
        f.truncate(0)
        f.write(f"{os.getpid()}\n".encode())
        f.flush()
        self._file = f
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file releases the flock
            self._file = None

    def __enter__(self) -> "RunLock":
        return self.acquire() if self._file is None else self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_run(run_dir: str | os.PathLike) -> RunLock:
    """Acquire and return the run lock of ``run_dir`` (release it with ``.release()`` or a ``with``)."""
    return RunLock(run_dir).acquire()


def lock_holder(run_dir: str | os.PathLike) -> int | None:
    """PID of the live process writing ``run_dir`` (0 if it cannot be read), or None when nobody is.
    Never creates or modifies anything (works on a read-only run directory)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            raw = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(raw) if raw.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
