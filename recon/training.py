"""Training: SoftRas multiview silhouette training, crash-safe and resumable.

The recipe (``Trainer.run``): for each step, sample pairs of views of the same objects -> predict
a mesh from each image -> render each mesh at both viewpoints -> silhouette IoU loss + Laplacian +
flatten regularisers (``SilhouetteObjective``) -> Adam step at the scheduled lr and sigma
(``schedule``); every ``val_every`` steps validate (3D IoU) and checkpoint. ``train(cfg, hooks)``
builds a ``Trainer``, runs it and cleans up.

Before the first step the run fixes its CPU thread count (``recon.runtime.choose_threads``) and
the precision of the networks (``recon.models.precision``: fp32, or bf16 autocast where native
and measured faster) and records both in config.json and every checkpoint.

Data item ``i`` is a pure function of ``(seed, i)`` and step ``s`` of rank ``r`` (of ``W``)
reads items ``(s * W + r) * B ... + B - 1`` (``step_items``), so the data sampler's whole state
*is* the step counter: resuming needs nothing else and DDP ranks read disjoint streams.

Crash safety (files: ``recon.runs``): the run directory is locked while training writes it; rank
0 writes ``checkpoints/step-N.pt`` atomically, keeps the last ``keep`` and points ``last.pt`` at it.
``--resume`` continues from the newest checkpoint that loads and then reproduces the
uninterrupted run bit for bit on CPU (same seed, data, thread count, precision and world size;
``--threads 0`` and ``--precision auto`` take the checkpoint's). SIGINT and
SIGTERM (``recon.signals``) finish the current step, checkpoint it and raise ``Interrupted``.

(~490 lines: the loop and everything that must happen between two steps of it (resume, precision
and thread choice, checkpoints, validation, stop signals, DDP agreement) are read together here;
the run directory's files live in ``recon.runs``, collectives in ``recon.distributed``.)
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from recon import cameras
from recon.budget import Plan
from recon.checkpoint import CHECKPOINT_VERSION, CheckpointError
from recon.colour import ColourObjective
from recon.config import TrainConfig, parse_views, save_config
from recon.data.dataset import PairDataset, split_categories
from recon.data.schema import validate as validate_dataset
from recon.distributed import (all_ranks, all_reduce, any_rank, barrier, close_distributed, dist_info,
                               init_distributed, resolve_device)
from recon.errors import UserError
from recon.evaluate import evaluate
from recon.io import check_output_dir
from recon.losses import FlattenLoss, LaplacianLoss, multiview_iou_loss
from recon.models import Reconstructor
from recon.models.precision import PrecisionChoice, choose_training_precision
from recon.render import Renderer, get_renderer
from recon.runs import (CKPT_DIR, MetricsLog, RunLock, check_resumable, clean_run_dir, find_resume_checkpoint,
                        resume_differences, save_best_checkpoint, save_step_checkpoint, step_checkpoints)
from recon.runtime import choose_threads, flush_denormals, tune_allocator
from recon.signals import Interrupted, graceful_stop, ignore_stop_signals, signal_name

__all__ = ["TrainingError", "check_train_inputs", "schedule", "SilhouetteObjective", "make_optimizer",
           "gradients_finite", "align_optimizer_state", "step_items", "StepSampler", "TrainHooks", "Trainer", "train"]


class TrainingError(UserError, RuntimeError):
    """Training cannot go on (e.g. repeated non-finite losses, a full disk); the message names the step."""


def schedule(cfg: TrainConfig, step: int) -> tuple[float, float]:
    """(lr, sigma) at ``step``. sigma is x ``decay`` from step ``decay_step`` on, or when it is 0 from
    ``decay_at * iterations`` (SoftRas: 150k of 250k); lr too with ``lr_schedule`` "step", while
    "cosine" lowers it along a half cosine from ``lr`` at step 0 to 0 at step ``iterations``."""
    factor = cfg.decay if step >= (cfg.decay_step or int(cfg.decay_at * cfg.iterations)) else 1.0
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(step / max(cfg.iterations, 1), 1.0))), cfg.sigma * factor
    return cfg.lr * factor, cfg.sigma * factor


# mark(phase, tensor): a phase of the step ends ("network", "render", "loss", "backward", "optimizer"); the
# tensor (or None) is the phase's output, whose gradient arrives when its backward part is done.
Mark = Callable[[str, "torch.Tensor | None"], None]


class SilhouetteObjective(torch.nn.Module):
    """SoftRas multiview objective for a batch of pairs.

    ``forward(model, renderer, faces, batch)`` -> dict of scalar losses ``loss, iou_loss, lap, flat``
    (+ ``renders``). Both images are reconstructed; each mesh is rendered at both viewpoints
    ([M_a@a, M_b@a, M_a@b, M_b@b]) and compared with the alpha of that viewpoint's image.
    ``batch``: ``image_a, image_b`` (B, 4, S, S), ``view_a, view_b`` (B,) view indices.
    """

    def __init__(self, faces: torch.Tensor, num_verts: int, lambda_lap: float, lambda_flat: float):
        super().__init__()
        self.lap = LaplacianLoss(num_verts, faces)
        self.flat = FlattenLoss(faces)
        self.lambda_lap = lambda_lap
        self.lambda_flat = lambda_flat

    @classmethod
    def from_config(cls, cfg: TrainConfig, model: Reconstructor) -> "SilhouetteObjective":
        """The objective ``cfg`` trains ``model`` with (its template's topology, cfg's weights)."""
        return cls(model.faces, model.decoder.num_verts, cfg.lambda_lap, cfg.lambda_flat)

    def render(self, renderer: Renderer, faces: torch.Tensor, verts: torch.Tensor,
               batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``verts`` (2B, V, 3) = [M_a, M_b] -> silhouettes (4B, S, S) = [M_a@a, M_b@a, M_a@b, M_b@b]."""
        views = torch.cat([batch["view_a"], batch["view_a"], batch["view_b"], batch["view_b"]])
        return renderer.silhouettes(torch.cat([verts, verts]), faces, cameras.view_azimuths(views).to(verts.device))

    def losses(self, verts: torch.Tensor, sil: torch.Tensor, batch: dict[str, torch.Tensor]
               ) -> dict[str, torch.Tensor]:
        """Losses of meshes ``verts`` (2B, V, 3) whose renders are ``sil`` (4B, S, S)."""
        iou = multiview_iou_loss(sil.split(batch["image_a"].shape[0]), batch["image_a"][:, 3], batch["image_b"][:, 3])
        lap = self.lap(verts).mean()
        flat = self.flat(verts).mean()
        loss = iou + self.lambda_lap * lap + self.lambda_flat * flat
        return {"loss": loss, "iou_loss": iou, "lap": lap, "flat": flat, "renders": sil.detach()}

    def forward(self, model: torch.nn.Module, renderer: Renderer, faces: torch.Tensor,
                batch: dict[str, torch.Tensor], mark: Mark | None = None) -> dict[str, torch.Tensor]:
        """``mark(phase, tensor)`` (optional, see :class:`TrainStep`) after the network and the render."""
        verts = model(torch.cat([batch["image_a"], batch["image_b"]]))  # (2B, V, 3): [M_a, M_b]
        if mark is not None:
            mark("network", verts)
        sil = self.render(renderer, faces, verts, batch)
        if mark is not None:
            mark("render", sil)
        return self.losses(verts, sil, batch)


def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
    """Adam (SoftRas). The fused kernel is ~10x faster than the per-tensor loop on CPU for this
    26M-parameter model; it is used wherever this torch build supports it."""
    try:
        return torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.Adam(model.parameters(), lr=lr)


def gradients_finite(parameters: Iterable[torch.Tensor]) -> torch.Tensor:
    """() bool tensor: every gradient of ``parameters`` is finite and its squared norm does not
    overflow (such a gradient would turn Adam's second moment into inf). One fused pass
    (``torch._foreach_norm``): an ``isfinite`` per tensor took 40 ms of a 150 ms CPU step for the
    26M-parameter baseline model."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(True)
    try:
        norms = torch._foreach_norm(grads)
    except (AttributeError, RuntimeError, NotImplementedError):  # no fused kernel: one norm per tensor
        norms = [torch.linalg.vector_norm(g) for g in grads]
    return torch.stack([n.float() for n in norms]).isfinite().all()


def align_optimizer_state(optimizer: torch.optim.Optimizer) -> int:
    """Give every per-parameter state tensor (Adam's moments) its parameter's memory layout, values
    unchanged; returns how many were moved. Needed after loading a checkpoint whose layout differs
    from the model's (e.g. written before channels_last): torch's fused CPU Adam pairs elements by
    memory position, so a channels_last parameter with a contiguous moment is updated wrongly."""
    moved = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    optimizer.state[p][key] = torch.empty_like(p, dtype=value.dtype).copy_(value)
                    moved += 1
    return moved


def step_items(step: int, batch_size: int, rank: int = 0, world: int = 1) -> list[int]:
    """Data item indices of ``step`` for ``rank`` of ``world``: disjoint across ranks and steps."""
    first = (step * world + rank) * batch_size
    return list(range(first, first + batch_size))


class StepSampler(Sampler[list[int]]):
    """Batches of item indices for steps ``start..stop-1`` of rank ``rank`` of ``world``.
    Its whole state is ``start``: this is why a checkpoint needs no sampler state."""

    def __init__(self, start: int, stop: int, batch_size: int, rank: int = 0, world: int = 1):
        self.start, self.stop, self.bs, self.rank, self.world = start, stop, batch_size, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        return (step_items(step, self.bs, self.rank, self.world) for step in range(self.start, self.stop))

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)


def _worker_init(worker_id: int) -> None:
    ignore_stop_signals()  # Ctrl-C reaches the whole process group; only the main process decides


class TrainStep:
    """One optimisation step: the one code path that ``Trainer`` trains with and the benchmarks time.

    ``step(batch, s)`` sets the learning rate and sigma of step ``s`` (:func:`schedule`), runs the
    objective, backpropagates, and applies Adam unless the loss or a gradient is not finite on some
    rank; such a step leaves the model exactly as it was (BatchNorm statistics included).

    Args:
        net: the module called in the forward pass (``model`` or its DDP wrapper).
    """

    def __init__(self, cfg: TrainConfig, model: Reconstructor, renderer: Renderer, objective: torch.nn.Module,
                 optimizer: torch.optim.Optimizer, device: torch.device, net: torch.nn.Module | None = None):
        self.cfg, self.model, self.renderer, self.objective = cfg, model, renderer, objective
        self.optimizer, self.device, self.net = optimizer, device, net if net is not None else model
        # BatchNorm statistics are updated by the forward pass even when the step is then skipped
        self._bn_buffers = [b for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                            for b in m.buffers()]

    @classmethod
    def build(cls, cfg: TrainConfig, model: Reconstructor, renderer: Renderer, device: torch.device) -> "TrainStep":
        """The step ``Trainer`` builds for ``cfg`` (objective and optimizer), without the run around it."""
        objective = SilhouetteObjective.from_config(cfg, model)
        if cfg.colour:  # + lambda_colour x colour L1 over the same renders (recon.colour)
            objective = ColourObjective(objective, cfg.lambda_colour)
        return cls(cfg, model, renderer, objective.to(device), make_optimizer(model, cfg.lr), device)

    def __call__(self, batch: dict[str, torch.Tensor], step: int,
                 mark: Mark | None = None) -> dict[str, torch.Tensor] | None:
        """Step ``step`` on ``batch``; returns the losses, or None when the step was skipped.

        Args:
            mark: called at the end of each phase (``"network"`` and ``"render"`` with their output,
                ``"loss"`` with None, then ``"backward"``, ``"optimizer"``); timing only, the step is
                the same with or without it.
        """
        lr, sigma = schedule(self.cfg, step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        self.renderer.set_sigma(sigma)
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        bn_before = [b.clone() for b in self._bn_buffers]
        out = self.objective(self.net, self.renderer, self.model.faces, batch,
                             **({"mark": mark} if mark is not None else {}))
        if mark is not None:
            mark("loss", None)
        self.optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        if mark is not None:
            mark("backward", None)
        finite = torch.isfinite(out["loss"]) & gradients_finite(self.model.parameters())
        if not all_ranks(bool(finite), self.device):  # every rank must agree to skip, or parameters diverge
            self.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                for b, old in zip(self._bn_buffers, bn_before):
                    b.copy_(old)
            return None
        self.optimizer.step()
        if mark is not None:
            mark("optimizer", None)
        return out


class TrainHooks:
    """What a caller sees of a training (override what you need; every method is a no-op except
    that warnings go to ``warnings.warn``). ``on_start``/``on_end`` run on every rank, messages only
    on rank 0; ``on_end`` runs even when training fails (``summary`` is then None)."""

    def on_start(self, trainer: "Trainer") -> None:
        """Everything is built (and resumed); the first step is ``trainer.step``."""

    def on_step(self, step: int, info: dict[str, float]) -> None:
        """After each step: its losses (``loss, iou_loss, lap, flat``; ``val_iou, val_loss`` after a validation)."""

    def plan(self, step: int, validated: bool) -> "Plan | None":
        """After each step (``step`` done; ``validated``: the previous step validated and checkpointed,
        so its time includes that): a new ``recon.budget.Plan`` (steps, decay step) to train to, or
        None to keep the current one. Asked only in single-process runs."""
        return None

    def on_message(self, text: str, level: str = "") -> None:
        """A remark for the user; ``level`` is "", "note" or "warning"."""
        if level == "warning":
            warnings.warn(text, stacklevel=3)

    def on_end(self, trainer: "Trainer", summary: dict[str, Any] | None) -> None:
        """Training finished (``summary``) or failed (None); files are closed after this."""


def check_train_inputs(cfg: TrainConfig) -> list[int]:
    """The files of a training, checked before anything is built: ``--out`` can become a run
    directory, the dataset has train and val objects in every category, sound GT meshes (the
    evaluation after training scores them) and ``--val-views`` fits it. What would otherwise fail
    at the first validation, hours in, fails now (one line naming the flag or file).

    Returns:
        the validation view indices (``val_views`` resolved against the dataset's views).
    """
    check_output_dir(cfg.out, "--out")
    info = validate_dataset(cfg.data, require_splits=("train", "val"), check_meshes=True)
    split_categories(info, "train")
    return parse_views(cfg.val_views, info.num_views, "--val-views")


class Trainer:
    """One training, built from a ``TrainConfig``: data, model, renderer, objective, optimizer and the
    step counter (resumed from the run directory with ``cfg.resume``). Under ``torchrun`` it joins
    the process group (gloo on CPU, nccl on CUDA) and wraps the model in DDP; only rank 0 writes."""

    def __init__(self, cfg: TrainConfig, hooks: TrainHooks | None = None):
        self.cfg, self.hooks = cfg, hooks or TrainHooks()
        # first, before any parallel op: OpenMP's worker threads take the setting when they start
        flush_denormals(cfg.flush_denormal)
        cfg.validate()
        self.val_views = check_train_inputs(cfg)
        self.dist = dist_info()
        self.rank, self.world, self.is_main = self.dist.rank, self.dist.world_size, self.dist.is_main
        self.device = init_distributed(resolve_device(cfg.device), self.dist)
        if self.device.type == "cpu":
            tune_allocator()  # reuse freed weight/gradient blocks instead of page-faulting them in every step
        self.run_dir = Path(cfg.out)
        self.dataset = PairDataset(cfg.data, "train", seed=cfg.seed, with_voxels=False)
        size = self.dataset.info.image_size
        torch.manual_seed(cfg.seed)  # same initial weights on every rank (DDP also broadcasts rank 0's)
        self.model = Reconstructor(cfg.encoder, image_size=size,
                                   colour=cfg.colour_head if cfg.colour else None).to(self.device)
        self.renderer = get_renderer(cfg.backend, sigma=cfg.sigma, eps=cfg.eps, image_size=size, impl=cfg.impl,
                                     device=str(self.device))
        self.faces = self.model.faces
        self.stepper = TrainStep.build(cfg, self.model, self.renderer, self.device)
        self.objective, self.optimizer = self.stepper.objective, self.stepper.optimizer
        self.step, self.best_iou, self.bad_steps, self._saved_step = 0, -1.0, 0, -1
        self.resumed_from: Path | None = None
        self._resumed_state: dict[str, Any] | None = None
        self.precision: PrecisionChoice | None = None
        self.runtime_note = ""  # how precision and threads were chosen (set before the first step)
        self.lock = self._lock()  # before reading or writing anything in the run directory
        self.logger: MetricsLog | None = None
        try:
            if cfg.resume:
                self._resume()
            elif any_rank(bool(step_checkpoints(self.run_dir)), self.device):
                raise TrainingError(f"{self.run_dir} already holds checkpoints; pass --resume to continue it "
                                    f"or choose another --out")
            self._settle_runtime()
            if self._resumed_state is not None:
                changed = resume_differences(self._resumed_state, asdict(self.cfg), self.world)
                if changed:
                    self._say("resuming with changed settings, the run will differ from an uninterrupted one: "
                              + "; ".join(changed), "note")
            self.net = self.model
            if self.world > 1:
                self.net = torch.nn.parallel.DistributedDataParallel(
                    self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            self.stepper.net = self.net
            self.logger = MetricsLog(self.run_dir, self.is_main, cfg.tensorboard, start_step=self.step)
        except BaseException:
            self.close()
            raise

    def _lock(self) -> RunLock | None:
        """Rank 0 locks the run directory; every rank fails at once if it could not."""
        lock, error = None, None
        if self.is_main:
            try:
                lock = RunLock(self.run_dir).acquire()
            except (ValueError, OSError) as e:
                error = e
        if any_rank(error is not None, self.device):
            raise error or TrainingError(f"{self.run_dir}: rank 0 could not lock the run directory")
        return lock

    def _say(self, message: str, level: str = "") -> None:
        if self.is_main:
            self.hooks.on_message(message, level)

    # -- checkpoints ---------------------------------------------------------------------
    def _state(self, full: bool = True) -> dict[str, Any]:
        state = {"version": CHECKPOINT_VERSION, "model": self.model.state_dict(), "step": self.step,
                 "best_iou": self.best_iou, "config": asdict(self.cfg), "precision": self.cfg.precision}
        if full:  # what resuming needs; the data sampler needs no state (see step_items)
            state.update(optimizer=self.optimizer.state_dict(), world_size=self.world,
                         num_threads=torch.get_num_threads(), torch_rng=torch.get_rng_state(),
                         cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [])
        return state

    def _resume(self) -> None:
        found, skipped = find_resume_checkpoint(self.run_dir)
        # all ranks read the same files (a shared filesystem): check it, as a mismatch would hang or diverge
        mine = float(found[1]["step"]) if found else -1.0
        hi, neg_lo = all_reduce([mine, -mine], self.device, "max")
        if hi != -neg_lo:
            raise TrainingError(f"--resume: ranks found different checkpoints in {self.run_dir} (steps {-neg_lo:.0f} "
                                f"to {hi:.0f}); every rank must see the same --out directory (shared filesystem)")
        # the all_reduce above is also the barrier that lets rank 0 rename files the others have read
        if self.is_main:
            for _, moved, reason in clean_run_dir(self.run_dir, skipped):
                self._say(f"skipping corrupt checkpoint: {reason}; moved it to {moved.name}", "warning")
        if found is None:
            self._say(f"--resume: no valid checkpoint in {self.run_dir}, starting from scratch", "note")
            return
        path, state = found
        check_resumable(path, state, self.cfg.encoder)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"{path}: does not fit this model/optimizer: {str(e).splitlines()[0]}") from None
        self.step = self._saved_step = int(state["step"])
        self.best_iou = float(state.get("best_iou", -1.0))
        torch.set_rng_state(state["torch_rng"])
        if torch.cuda.is_available() and state.get("cuda_rng"):
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.resumed_from = path
        self._resumed_state = {k: v for k, v in state.items() if k not in ("model", "optimizer")}
        self._say(f"resumed from {path} at step {self.step}")

    def _settle_runtime(self) -> None:
        """Fix the thread count and the precision for the whole run and record them in ``self.cfg``
        (so config.json and every checkpoint name what was used). ``--threads 0`` / ``--precision
        auto`` take a resumed checkpoint's values, so that the resumed run continues the same
        computation; otherwise ``recon.runtime.choose_threads`` and
        ``recon.models.precision.choose_training_precision`` decide (rank 0's choice for all ranks)."""
        cfg, old = self.cfg, self._resumed_state
        threads = cfg.threads
        if threads == 0 and old is not None and old.get("num_threads"):
            threads, why = int(old["num_threads"]), "as the resumed checkpoint"
        elif self.device.type == "cpu":
            threads, why = choose_threads(cfg.threads, processes=int(os.environ.get("LOCAL_WORLD_SIZE", 1)))
        else:
            threads, why = cfg.threads or torch.get_num_threads(), "requested" if cfg.threads else "torch default"
        torch.set_num_threads(threads)
        old_precision = None if old is None else old["config"].get("precision", "fp32")  # unrecorded: fp32
        if cfg.precision == "auto" and old_precision in ("fp32", "bf16"):
            choice = PrecisionChoice(old_precision, "auto: as the resumed checkpoint")
        else:
            choice = choose_training_precision(cfg.precision, self.model, 2 * cfg.batch_size,
                                               self.dataset.info.image_size, self.device)
        if self.world > 1:  # every rank computes alike: rank 0 decides
            bf16 = all_reduce([float(choice.precision == "bf16") if self.is_main else 0.0], self.device)[0] > 0
            choice = dataclasses.replace(choice, precision="bf16" if bf16 else "fp32")
        self.model.set_precision(choice.precision)
        align_optimizer_state(self.optimizer)  # the layout set_precision chose, also for resumed moments
        self.precision = choice
        self.cfg = self.stepper.cfg = dataclasses.replace(cfg, threads=threads, precision=choice.precision)
        self.runtime_note = f"precision {choice.precision} ({choice.reason}); {threads} CPU thread(s) ({why})"
        self._say(self.runtime_note)

    def save(self) -> None:
        """Checkpoint the current step (rank 0 writes; every rank waits for it)."""
        self._saved_step = self.step
        if self.is_main:
            save_step_checkpoint(self.run_dir, self._state(), self.cfg.keep)
        barrier(self.device)

    # -- one step ------------------------------------------------------------------------
    def batches(self) -> DataLoader:
        """The batches of the remaining steps, ``self.step`` to ``cfg.iterations - 1``."""
        sampler = StepSampler(self.step, self.cfg.iterations, self.cfg.batch_size, self.rank, self.world)
        # own generator: building the loader must not consume the global RNG (resume reproducibility)
        return DataLoader(self.dataset, batch_sampler=sampler, num_workers=self.cfg.workers,
                          worker_init_fn=_worker_init if self.cfg.workers else None, persistent_workers=False,
                          generator=torch.Generator().manual_seed(self.cfg.seed))

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        """One optimisation step at ``self.step`` (:class:`TrainStep`); returns the losses, or None when
        the step was skipped because the loss or a gradient was not finite on some rank."""
        return self.stepper(batch, self.step)

    def validate(self) -> dict[str, float]:
        """3D IoU and silhouette loss on the val split (``val_objects`` per category, ``val_views``); with
        ``--colour`` also the PSNR of the colours at the input views (``val_psnr``, ``recon.colour``)."""
        res = evaluate(self.model, self.renderer, self.cfg.data, "val", views=self.val_views,
                       max_per_category=self.cfg.val_objects or None, device=self.device, full_metrics=False)
        colour = {"val_psnr": res.mean("psnr")} if self.cfg.colour else {}
        return {"val_iou": res.mean_iou, "val_loss": res.mean_loss, **colour}

    # -- the loop ------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Train to ``cfg.iterations`` (which ``hooks.plan`` may move as training goes). Returns
        ``{step, best_val_iou, time}``."""
        log = self.logger
        if self.is_main:
            save_config(self.cfg, self.run_dir / "config.json")
        self.model.train()
        t0 = last_t = time.time()
        last_step = self.step
        validated = False
        self.hooks.on_start(self)
        with graceful_stop() as stop:
            while self.step < self.cfg.iterations:
                for batch in self.batches():  # up to the planned end; rebuilt from self.step when it moves
                    if any_rank(bool(stop), self.device):
                        self._stop(int(all_reduce([float(stop.signum or 0)], self.device, "max")[0]))
                    out = self.train_step(batch)
                    self.step += 1
                    if out is None:
                        self._skipped()
                        continue
                    self.bad_steps = 0
                    plan = getattr(self.hooks, "plan", None)  # hooks written before plans existed have none
                    if self.world == 1 and plan is not None:
                        self._apply_plan(plan(self.step, validated))
                    cfg = self.cfg
                    info = {k: float(v.detach()) for k, v in out.items() if k != "renders"}
                    if self.step % cfg.log_every == 0 or self.step == cfg.iterations:
                        # the mean over ranks, i.e. over the global batch
                        info = dict(zip(info, (v / self.world for v in all_reduce(list(info.values()), self.device))))
                        now = time.time()
                        lr, sigma = schedule(cfg, self.step - 1)
                        log.log({"step": self.step, **info, "lr": lr, "sigma": sigma,
                                 "it_s": (self.step - last_step) / max(now - last_t, 1e-9), "time": now - t0})
                        last_t, last_step = now, self.step
                    if self.step % (cfg.log_every * 20) == 0:
                        log.images(self.step, batch, out["renders"])
                    validated = self.step % cfg.val_every == 0 or self.step == cfg.iterations
                    if validated:
                        if self.is_main:
                            val = self.validate()
                            info.update(val)
                            log.log({"step": self.step, **val})
                            if val["val_iou"] > self.best_iou:
                                self.best_iou = val["val_iou"]
                                save_best_checkpoint(self.run_dir, self._state(full=False))
                        self.save()
                    self.hooks.on_step(self.step, info)
                    if self.step >= cfg.iterations:
                        break
        if self.step >= self.cfg.iterations and self._saved_step != self.step:
            self.save()  # the last step was skipped as non-finite: still leave a checkpoint of the end
        return {"step": self.step, "best_val_iou": self.best_iou, "time": time.time() - t0}

    def _apply_plan(self, plan: Plan | None) -> None:
        """Train to ``plan.iterations`` with the decay from ``plan.decay_step`` (config.json follows)."""
        if plan is None or (plan.iterations, plan.decay_step) == (self.cfg.iterations, self.cfg.decay_step):
            return
        # the step reads the schedule from its own cfg: both follow the plan
        self.cfg = self.stepper.cfg = dataclasses.replace(self.cfg, iterations=max(plan.iterations, self.step),
                                                          decay_step=plan.decay_step)
        if self.is_main:
            save_config(self.cfg, self.run_dir / "config.json")

    def _skipped(self) -> None:
        self.bad_steps += 1
        self.logger.log({"step": self.step, "event": "non-finite loss or gradient, step skipped"})
        self._say(f"step {self.step}: non-finite loss or gradient, step skipped ({self.bad_steps} in a row)", "warning")
        if self.bad_steps >= self.cfg.max_bad_steps:
            raise TrainingError(f"step {self.step}: loss or gradients were not finite for {self.bad_steps} steps in a "
                                f"row; stopped. The last good checkpoint is kept in {self.run_dir / CKPT_DIR}")

    def _stop(self, signum: int) -> None:
        """Checkpoint the current step and stop with ``Interrupted(signum)``."""
        if self._saved_step != self.step:
            self.save()
        self._say(f"{signal_name(signum)} at step {self.step}: saved "
                  f"{self.run_dir / CKPT_DIR / f'step-{self.step:08d}.pt'}; continue with --resume", "note")
        raise Interrupted(signum)

    def kept(self) -> str:
        """What the run directory holds now, for messages after a failure."""
        ckpts = step_checkpoints(self.run_dir)
        if not ckpts:
            return "no checkpoint was written yet"
        return f"the checkpoints up to step {ckpts[0][0]} are intact ({ckpts[0][1]}); continue with --resume"

    def close(self) -> None:
        """Close the logs, release the run lock and leave the process group."""
        if self.logger is not None:
            self.logger.close()
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        close_distributed()

    def __enter__(self) -> "Trainer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def train(cfg: TrainConfig, hooks: TrainHooks | None = None) -> dict[str, Any]:
    """Validate ``cfg``, train to ``cfg.iterations`` (or resume to it) and return
    ``{step, best_val_iou, time}``.

    Raises:
        ValueError / DatasetFormatError / CheckpointError: bad settings or files (before any work).
        TrainingError: training could not go on (non-finite losses, a full disk: what was kept is named).
        recon.signals.Interrupted: SIGINT/SIGTERM; the current step was checkpointed first.
    """
    hooks = hooks or TrainHooks()
    with Trainer(cfg, hooks) as trainer:
        summary = None
        try:
            summary = trainer.run()
            return summary
        except OSError as e:  # a full disk or a vanished directory while writing the run
            where = e.filename or trainer.run_dir
            raise TrainingError(f"{where}: {e.strerror or e} at step {trainer.step}; training stopped; "
                                f"{trainer.kept()}") from None
        finally:
            hooks.on_end(trainer, summary)
