"""The training loop: SoftRas multiview silhouette training, crash-safe and resumable.

Read top to bottom: ``Trainer.__init__`` builds data, model, renderer and optimizer (and
resumes), ``Trainer.run`` loops ``step``: sample pairs -> predict meshes from both images ->
render each at both viewpoints -> IoU + Laplacian + flatten losses -> Adam step.

Data item ``i`` is a pure function of ``(seed, i)`` and step ``s`` of rank ``r`` (of ``W``)
reads items ``(s * W + r) * B ... + B - 1``, so the data sampler's whole state *is* the step
counter: resuming needs nothing else and DDP ranks read disjoint streams.

Crash safety: every ``val_every`` steps rank 0 writes ``checkpoints/step-N.pt`` (model, optimizer,
step, RNG states, config) atomically, keeps the last ``keep``, and points ``last.pt`` at it.
``--resume`` continues from the newest checkpoint that loads (corrupt ones are renamed
``*.corrupt`` with a warning), drops ``metrics.jsonl`` lines written after it, and then reproduces
the uninterrupted run bit for bit on CPU (same seed, data, thread count and world size).
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from recon import cameras
from recon.checkpoint import (CKPT_DIR, CheckpointError, latest_valid_checkpoint, load_checkpoint, quarantine,
                              remove_stale_temps, save_checkpoint, step_checkpoints)
from recon.config import TrainConfig, save_config
from recon.data.dataset import PairDataset, split_categories
from recon.evaluate import evaluate, parse_views
from recon.losses import FlattenLoss, LaplacianLoss, multiview_iou_loss
from recon.mesh import atomic_write_bytes
from recon.models import Reconstructor
from recon.render import Renderer, get_renderer

__all__ = ["TrainingError", "resolve_device", "schedule", "make_optimizer", "step_items", "SilhouetteObjective",
           "Trainer", "load_model"]

CHECKPOINT_VERSION = 1


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. repeated non-finite losses); the message names the step."""


def resolve_device(spec: str) -> torch.device:
    """``auto`` -> cuda when available, else cpu. Raises ValueError (naming ``--device``) for anything
    that is not ``cpu``, ``cuda`` or ``cuda:N`` usable on this machine."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"--device {spec!r}: not a device; expected auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {spec!r}: unsupported device type {dev.type!r}; expected auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {spec}: CUDA is not available on this machine (use cpu or auto)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"--device {spec}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return dev


def _check_run_dir(path: Path) -> None:
    """Fail early (before any work) when ``--out`` cannot become a run directory."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path}: exists and is not a directory")
    parent = path
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"--out {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {path}: {parent} is not writable")


def schedule(cfg: TrainConfig, step: int) -> tuple[float, float]:
    """(lr, sigma) at ``step``: both x ``decay`` after ``decay_at * iterations`` (SoftRas: 150k/250k)."""
    factor = cfg.decay if step >= int(cfg.decay_at * cfg.iterations) else 1.0
    return cfg.lr * factor, cfg.sigma * factor


class SilhouetteObjective(torch.nn.Module):
    """SoftRas multiview objective for a batch of pairs.

    ``forward(model, renderer, batch)`` -> dict of scalar losses ``loss, iou, lap, flat``.
    Both images are reconstructed; each mesh is rendered at both viewpoints
    ([M_a@a, M_b@a, M_a@b, M_b@b]) and compared with the alpha of that viewpoint's image.
    """

    def __init__(self, faces: torch.Tensor, num_verts: int, lambda_lap: float, lambda_flat: float):
        super().__init__()
        self.lap = LaplacianLoss(num_verts, faces)
        self.flat = FlattenLoss(faces)
        self.lambda_lap = lambda_lap
        self.lambda_flat = lambda_flat

    def forward(self, model: torch.nn.Module, renderer: Renderer, faces: torch.Tensor,
                batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        image_a, image_b = batch["image_a"], batch["image_b"]
        b = image_a.shape[0]
        verts = model(torch.cat([image_a, image_b]))                       # (2B, V, 3): [M_a, M_b]
        views = torch.cat([batch["view_a"], batch["view_a"], batch["view_b"], batch["view_b"]])
        sil = renderer.silhouettes(torch.cat([verts, verts]), faces,
                                   cameras.view_azimuths(views).to(verts.device))
        renders = sil.split(b)                                             # [Ma@a, Mb@a, Ma@b, Mb@b]
        iou = multiview_iou_loss(renders, image_a[:, 3], image_b[:, 3])
        lap = self.lap(verts).mean()
        flat = self.flat(verts).mean()
        loss = iou + self.lambda_lap * lap + self.lambda_flat * flat
        return {"loss": loss, "iou": iou, "lap": lap, "flat": flat, "renders": sil.detach()}


def step_items(step: int, batch_size: int, rank: int = 0, world: int = 1) -> list[int]:
    """Data item indices of ``step`` for ``rank`` of ``world``: disjoint across ranks and steps."""
    first = (step * world + rank) * batch_size
    return list(range(first, first + batch_size))


class _StepSampler(Sampler[list[int]]):
    """Batches of item indices for steps ``start..stop-1`` of rank ``rank`` of ``world``.

    Its whole state is ``start``: this is why a checkpoint needs no sampler state."""

    def __init__(self, start: int, stop: int, batch_size: int, rank: int = 0, world: int = 1,
                 record: list[list[int]] | None = None):
        self.start, self.stop, self.bs, self.rank, self.world = start, stop, batch_size, rank, world
        self.record = record  # debug dumps only: every batch handed to the loader

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            items = step_items(step, self.bs, self.rank, self.world)
            if self.record is not None:
                self.record.append(items)
            yield items

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam (SoftRas). The fused kernel is ~10x faster than the per-tensor loop on CPU for this
    26M-parameter model; it is used wherever this torch build supports it."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=lr)


def _dist_info() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment (1 process without it)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def load_model(checkpoint: str | os.PathLike, device: torch.device | str = "cpu",
               encoder: str | None = None) -> tuple[Reconstructor, dict[str, Any]]:
    """Rebuild the model of a checkpoint. ``encoder`` (if given) must match the checkpoint's."""
    state = load_checkpoint(checkpoint, map_location="cpu")
    cfg = state["config"]
    ck_enc = cfg.get("encoder", "baseline")
    if encoder is not None and encoder != ck_enc:
        raise CheckpointError(f"{checkpoint}: checkpoint was trained with encoder {ck_enc!r}, "
                              f"but encoder {encoder!r} was requested")
    model = Reconstructor(ck_enc)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise CheckpointError(f"{checkpoint}: weights do not fit encoder {ck_enc!r}: "
                              f"{str(e).splitlines()[0]}") from None
    return model.to(device).eval(), state


class _Logger:
    """metrics.jsonl (+ TensorBoard when installed and enabled). Only rank 0 logs.

    A run that starts at ``start_step`` (0, or the step it resumed from) first drops the records
    of later steps, which a killed run wrote after its last checkpoint and which the resumed run
    writes again: the file never holds a step twice, nor a line cut short by a kill."""

    def __init__(self, run_dir: Path, enabled: bool, tensorboard: bool, start_step: int = 0):
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tb = None
        if not enabled:
            return
        self._truncate(start_step)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                # purge_step hides the killed run's events after the checkpoint, as above
                self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=start_step + 1 if start_step else None)
            except ImportError:  # tensorboard is an optional extra
                self.tb = None

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
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            step = record["step"]
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)

    def images(self, step: int, batch: dict[str, torch.Tensor], renders: torch.Tensor) -> None:
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


# Settings whose change on --resume is harmless (where and how fast, not what is computed).
_RESUME_FREE = {"resume", "out", "data", "iterations", "device", "workers", "tensorboard", "log_every", "val_every",
                "val_objects", "val_views", "keep", "max_bad_steps", "threads", "impl"}


class Trainer:
    """Builds everything from a ``TrainConfig`` and runs the loop. Under ``torchrun`` it joins the
    process group (gloo on CPU, nccl on CUDA) and wraps the model in DDP; only rank 0 writes.

    Debugging aid: with ``RECON_DUMP_PARAMS=DIR`` in the environment, every rank writes
    ``DIR/rank<r>.pt`` at the end of ``run`` (its parameters, buffers and the item indices it read)."""

    def __init__(self, cfg: TrainConfig, console: Any = None):
        self.cfg = cfg
        self.console = console
        self.rank, self.world, local_rank = _dist_info()
        self.device = resolve_device(cfg.device)
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", local_rank)
            torch.cuda.set_device(self.device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.is_main = self.rank == 0
        if cfg.threads > 0:
            # CPU results are bitwise reproducible for a fixed thread count (reduction splits depend on it)
            torch.set_num_threads(cfg.threads)
        self.run_dir = Path(cfg.out)
        self.dataset = PairDataset(cfg.data, "train", seed=cfg.seed, with_voxels=False)
        # everything that would otherwise fail at the first validation, hours in, fails now
        try:
            self.val_views = parse_views(cfg.val_views, self.dataset.num_views)
        except ValueError as e:
            raise ValueError(f"--val-views {cfg.val_views!r}: {e}") from None
        try:
            split_categories(self.dataset.info, "val")
        except ValueError as e:
            raise ValueError(f"{e} (training validates on it every --val-every steps)") from None
        _check_run_dir(self.run_dir)
        torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
        self.model = Reconstructor(cfg.encoder, image_size=self.dataset.info.image_size).to(self.device)
        self.renderer = get_renderer(cfg.backend, sigma=cfg.sigma, image_size=self.dataset.info.image_size,
                                     **({"impl": cfg.impl} if cfg.backend == "softras" else {}),
                                     device=str(self.device))
        self.faces = self.model.faces
        self.objective = SilhouetteObjective(self.faces, self.model.decoder.num_verts, cfg.lambda_lap,
                                             cfg.lambda_flat).to(self.device)
        self.optimizer = make_optimizer(self.model, cfg.lr)
        # BatchNorm statistics are updated by the forward pass even when the step is then skipped
        self._bn_buffers = [b for m in self.model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                            for b in m.buffers()]
        self.step = 0
        self.best_iou = -1.0
        self.bad_steps = 0
        self.resumed_from: Path | None = None
        self._saved_step = -1
        if cfg.resume:
            self._resume()
        elif self._any_rank(bool(step_checkpoints(self.run_dir))):
            raise TrainingError(f"{self.run_dir} already holds checkpoints; pass --resume to continue it "
                                f"or choose another --out")
        self.net = self.model
        if self.world > 1:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.logger = _Logger(self.run_dir, self.is_main, cfg.tensorboard, start_step=self.step)

    # -- collectives (no-ops in a single process) ----------------------------------------
    def _all_reduce(self, values: list[float], op: Any = dist.ReduceOp.SUM) -> list[float]:
        if self.world == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=op)
        return t.tolist()

    def _any_rank(self, flag: bool) -> bool:
        return self._all_reduce([float(flag)], dist.ReduceOp.MAX)[0] > 0

    def _barrier(self) -> None:
        if self.world > 1:
            dist.barrier(device_ids=[self.device.index]) if self.device.type == "cuda" else dist.barrier()

    def _say(self, message: str, level: str = "") -> None:
        """Rank 0 prints ``message`` (plain text, no markup) to the console, prefixed by ``level``."""
        if self.is_main and self.console is not None:
            from rich.markup import escape

            prefix = f"[yellow]{level}:[/] " if level else ""
            self.console.print(prefix + escape(message), highlight=False, soft_wrap=True)

    # -- checkpoints ---------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "version": CHECKPOINT_VERSION,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "best_iou": self.best_iou,
            "config": asdict(self.cfg),
            # the data sampler needs no state: step s reads items (s * world + rank) * batch_size ...
            "world_size": self.world,
            "num_threads": torch.get_num_threads(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        }

    def _resume(self) -> None:
        skipped: list[tuple[Path, str]] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # reported once, below, by rank 0
            found = latest_valid_checkpoint(self.run_dir, skipped=skipped)
        # all ranks read the same files (a shared filesystem): check it, as a mismatch would hang or diverge
        mine = float(found[1]["step"]) if found else -1.0
        hi, neg_lo = self._all_reduce([mine, -mine], dist.ReduceOp.MAX)
        if hi != -neg_lo:
            raise TrainingError(f"--resume: ranks found different checkpoints in {self.run_dir} (steps {-neg_lo:.0f} "
                                f"to {hi:.0f}); every rank must see the same --out directory (shared filesystem)")
        # the all_reduce above is also the barrier that lets rank 0 rename files the others have read
        if self.is_main:
            for path, reason in skipped:
                moved = quarantine(path)
                msg = f"skipping corrupt checkpoint: {reason}; moved it to {moved.name}"
                if self.console is not None:
                    self._say(msg, "warning")
                else:
                    warnings.warn(msg, stacklevel=3)
            remove_stale_temps(self.run_dir / CKPT_DIR)
            remove_stale_temps(self.run_dir)
        if found is None:
            self._say(f"--resume: no valid checkpoint in {self.run_dir}, starting from scratch", "note")
            return
        path, state = found
        enc = state["config"].get("encoder")
        if enc != self.cfg.encoder:
            raise CheckpointError(f"{path}: checkpoint was trained with encoder {enc!r}, not {self.cfg.encoder!r}")
        if "optimizer" not in state or "torch_rng" not in state:
            raise CheckpointError(f"{path}: not a training checkpoint (no optimizer / RNG state); "
                                  f"it cannot be resumed")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{path}: does not fit this model/optimizer: {str(e).splitlines()[0]}") from None
        self.step = int(state["step"])
        self._saved_step = self.step
        self.best_iou = float(state.get("best_iou", -1.0))
        torch.set_rng_state(state["torch_rng"])
        if torch.cuda.is_available() and state.get("cuda_rng"):
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.resumed_from = path
        self._say(f"resumed from {path} at step {self.step}")
        old = state["config"]
        changed = [f"{k} {old[k]!r} -> {v!r}" for k, v in asdict(self.cfg).items()
                   if k in old and old[k] != v and k not in _RESUME_FREE]
        if state.get("world_size", self.world) != self.world:
            changed.append(f"world size {state['world_size']} -> {self.world} (data stream changes)")
        if changed:
            self._say("resuming with changed settings, the run will differ from an uninterrupted one: "
                      + "; ".join(changed), "note")

    def save(self) -> None:
        """Write ``checkpoints/step-N.pt`` and ``last.pt`` atomically; keep the last ``keep``."""
        self._saved_step = self.step
        if not self.is_main:
            return
        state = self._state()
        name = f"step-{self.step:08d}.pt"
        save_checkpoint(state, self.run_dir / CKPT_DIR / name)
        tmp = self.run_dir / ".last.pt.link"
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(os.path.join(CKPT_DIR, name), tmp)
        os.replace(tmp, self.run_dir / "last.pt")
        # only after the new checkpoint is durable: a kill here leaves one checkpoint too many
        for _, old in step_checkpoints(self.run_dir)[max(self.cfg.keep, 1):]:
            old.unlink(missing_ok=True)

    def _save_best(self, val_iou: float) -> None:
        if not self.is_main:
            return
        self.best_iou = val_iou
        save_checkpoint({"version": CHECKPOINT_VERSION, "model": self.model.state_dict(), "step": self.step,
                         "best_iou": val_iou, "config": asdict(self.cfg)}, self.run_dir / "best.pt")

    # -- the loop ------------------------------------------------------------------------
    def _loader(self, record: list[list[int]] | None = None) -> DataLoader:
        sampler = _StepSampler(self.step, self.cfg.iterations, self.cfg.batch_size, self.rank, self.world, record)
        # own generator: building the loader must not consume the global RNG (resume reproducibility)
        return DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.cfg.workers,
                          persistent_workers=False, generator=torch.Generator().manual_seed(self.cfg.seed))

    def validate(self) -> dict[str, float]:
        res = evaluate(self.model, self.renderer, self.cfg.data, "val", views=self.val_views,
                       max_per_category=self.cfg.val_objects or None, device=self.device, full_metrics=False)
        return {"val_iou": res.mean_iou, "val_loss": res.mean_loss}

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        """One optimisation step; returns the losses, or None when the step was skipped
        because the loss or a gradient was not finite (the model is then left exactly as it was,
        BatchNorm statistics included)."""
        lr, sigma = schedule(self.cfg, self.step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.renderer.set_sigma(sigma)
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        bn_before = [b.clone() for b in self._bn_buffers]
        out = self.objective(self.net, self.renderer, self.faces, batch)
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        finite = torch.isfinite(out["loss"]).float()
        for p in self.model.parameters():
            if p.grad is not None:
                finite = finite * torch.isfinite(p.grad).all().float()
        if self.world > 1:  # every rank must agree to skip, or parameters diverge
            dist.all_reduce(finite, op=dist.ReduceOp.MIN)
        if finite.item() < 1:
            self.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                for b, old in zip(self._bn_buffers, bn_before):
                    b.copy_(old)
            return None
        self.optimizer.step()
        return out

    def run(self, progress: Any = None) -> dict[str, Any]:
        """Train to ``cfg.iterations``. ``progress(step, info)`` is called after each step."""
        cfg = self.cfg
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.json")
        self.model.train()
        dump_dir = os.environ.get("RECON_DUMP_PARAMS")
        record: list[list[int]] | None = [] if dump_dir else None
        t0, last_t, last_step = time.time(), time.time(), self.step
        self._stop_signal = None
        # SIGTERM (scheduler preemption, docker stop, torchrun shutting down) saves a checkpoint at the
        # next step boundary instead of losing the steps since the last one
        previous = (signal.signal(signal.SIGTERM, self._on_signal)
                    if threading.current_thread() is threading.main_thread() else None)
        try:
            for batch in self._loader(record):
                if self._any_rank(self._stop_signal is not None):
                    self._stop()
                out = self.train_step(batch)
                self.step += 1
                if out is None:
                    self.bad_steps += 1
                    self.logger.log({"step": self.step, "event": "non-finite loss or gradient, step skipped"})
                    self._say(f"step {self.step}: non-finite loss or gradient, step skipped "
                              f"({self.bad_steps} in a row)", "warning")
                    if self.bad_steps >= cfg.max_bad_steps:
                        raise TrainingError(
                            f"step {self.step}: loss or gradients were not finite for {self.bad_steps} steps in a "
                            f"row; stopped. The last good checkpoint is kept in {self.run_dir / CKPT_DIR}")
                    continue
                self.bad_steps = 0
                info = {k: float(v.detach()) for k, v in out.items() if k != "renders"}
                if self.step % cfg.log_every == 0 or self.step == cfg.iterations:
                    if self.world > 1:  # log the mean over ranks, i.e. over the global batch
                        info = dict(zip(info, (v / self.world for v in self._all_reduce(list(info.values())))))
                    now = time.time()
                    lr, sigma = schedule(cfg, self.step - 1)
                    self.logger.log({"step": self.step, **info, "lr": lr, "sigma": sigma,
                                     "it_s": (self.step - last_step) / max(now - last_t, 1e-9), "time": now - t0})
                    last_t, last_step = now, self.step
                if self.step % (cfg.log_every * 20) == 0:
                    self.logger.images(self.step, batch, out["renders"])
                if self.step % cfg.val_every == 0 or self.step == cfg.iterations:
                    if self.is_main:
                        val = self.validate()
                        info.update(val)
                        self.logger.log({"step": self.step, **val})
                        if val["val_iou"] > self.best_iou:
                            self._save_best(val["val_iou"])
                    self.save()
                    self._barrier()
                if progress is not None:
                    progress(self.step, info)
            if self.step >= cfg.iterations and self._saved_step != self.step:
                self.save()  # the last step was skipped as non-finite: still leave a checkpoint of the end
                self._barrier()
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
            self.logger.close()
        if dump_dir:
            save_checkpoint({"rank": self.rank, "world": self.world, "step": self.step,
                             "params": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
                             "items": torch.tensor(record, dtype=torch.int64).reshape(-1, cfg.batch_size)},
                            Path(dump_dir) / f"rank{self.rank}.pt")
        return {"step": self.step, "best_val_iou": self.best_iou, "time": time.time() - t0}

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop_signal = signum

    def _stop(self) -> None:
        """Checkpoint the current step and stop (raises KeyboardInterrupt: the pipelines exit with 130)."""
        if self._saved_step != self.step:
            self.save()
            self._barrier()
        self._say(f"SIGTERM at step {self.step}: saved {self.run_dir / CKPT_DIR / f'step-{self.step:08d}.pt'}; "
                  f"continue with --resume", "note")
        raise KeyboardInterrupt

    def close(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
