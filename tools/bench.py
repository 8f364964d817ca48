"""Renderer and training-step benchmarks: every available implementation measured side by side
in one process, so ratios are meaningful on a shared, noisy machine. Nothing here asserts on time.

(~450 lines in one module on purpose: every measurement shares the timing helpers and the
deformed-template inputs, and ``pipelines.bench`` runs them all in one process.)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

import torch
from torch.utils.data import DataLoader

from recon import cameras
from recon.config import TrainConfig
from recon.data.dataset import PairDataset
from recon.ops.voxelize_exact import voxelize
from recon.models import Reconstructor
from recon.models.precision import PrecisionChoice, choose_training_precision
from recon.render import RasterSettings, get_renderer
from recon.render.softras import IMPLS, available_impls, make_renderer
from recon.ops.silhouette_dense import soft_silhouette_dense
from recon.runtime import tune_allocator
from recon.training import StepSampler, TrainStep, schedule
from tools.meshes import deformed_spheres

__all__ = ["BenchRecord", "time_fn", "bench_renderers", "bench_train_step",
           "bench_voxelize", "bench_protocols", "renderer_ratios", "TimedStep", "StepRecord", "BusyProcess",
           "bench_training_steps", "auto_precision", "step_ratios", "bench_contention", "bench_layouts"]


@dataclass
class BenchRecord:
    impl: str
    device: str
    batch: int
    fwd_ms: float
    fwdbwd_ms: float
    per_image_fwdbwd_ms: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def bench_renderers(batches: tuple[int, ...] = (1, 16, 64), device: str = "cpu", repeats: int = 5,
                    dense_batch: int = 1, image_size: int = 64, sigma: float = 1e-4,
                    impls: tuple[str, ...] | None = None) -> list[BenchRecord]:
    """Forward and forward+backward time of every available softras implementation, plus the dense
    oracle at ``dense_batch`` (its per-image time is comparable to the others')."""
    dev = torch.device(device)
    usable = [i for i, why in available_impls(device).items() if why is None]
    if impls:
        usable = [i for i in usable if i in impls]
    settings = RasterSettings(image_size=image_size, sigma=sigma)
    records: list[BenchRecord] = []
    for batch in batches:
        verts, faces = deformed_spheres(batch, 3, dev)
        az = cameras.view_azimuths(torch.arange(batch) % cameras.NUM_VIEWS).to(dev)
        for impl in [i for i in IMPLS if i in usable]:
            r = make_renderer(settings, impl=impl, device=device)
            ndc = r.project(verts, az).detach()
            fwd = time_fn(lambda: r.rasterize_ndc(ndc, faces), dev, repeats)

            def fb() -> None:
                x = ndc.clone().requires_grad_(True)
                r.rasterize_ndc(x, faces).sum().backward()

            fb_ms = time_fn(fb, dev, repeats)
            records.append(BenchRecord(impl, device, batch, fwd, fb_ms, fb_ms / batch))
    verts, faces = deformed_spheres(dense_batch, 3, dev)
    r = make_renderer(settings, impl="torch", device=device)
    ndc = r.project(verts, cameras.view_azimuths(torch.zeros(dense_batch, dtype=torch.long)).to(dev)).detach()
    fwd = time_fn(lambda: soft_silhouette_dense(ndc, faces, image_size, sigma), dev, max(2, repeats // 2))

    def fb_dense() -> None:
        x = ndc.clone().requires_grad_(True)
        soft_silhouette_dense(x, faces, image_size, sigma).sum().backward()

    fb_ms = time_fn(fb_dense, dev, max(2, repeats // 2))
    records.append(BenchRecord("dense", device, dense_batch, fwd, fb_ms, fb_ms / dense_batch))
    return records


def renderer_ratios(records: list[BenchRecord]) -> dict[str, float]:
    """Speedups (forward+backward): torch/cpp and torch/cuda at equal batch; dense/x per image."""
    by = {(r.impl, r.batch): r for r in records}
    dense = next((r for r in records if r.impl == "dense"), None)
    out: dict[str, float] = {}
    for (impl, batch), r in by.items():
        if impl in ("cpp", "cuda") and ("torch", batch) in by:
            out[f"torch/{impl}@{batch}"] = by[("torch", batch)].fwdbwd_ms / r.fwdbwd_ms
        if impl != "dense" and dense is not None:
            out[f"dense/{impl}@{batch} per image"] = dense.per_image_fwdbwd_ms / r.per_image_fwdbwd_ms
    return out


def _random_pairs(batch: int, device: torch.device, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch of random 64x64 RGBA pairs with binary alpha (the silhouette target) and views."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(2 * batch, 4, 64, 64, generator=g)
    images[:, 3] = (images[:, 3] > 0.5).float()
    return {"image_a": images[:batch].to(device), "image_b": images[batch:].to(device),
            "view_a": torch.randint(0, cameras.NUM_VIEWS, (batch,), generator=g),
            "view_b": torch.randint(0, cameras.NUM_VIEWS, (batch,), generator=g)}


def _data_batches(dataset: PairDataset, cfg: TrainConfig) -> Iterator[dict[str, torch.Tensor]]:
    """Endless training batches of ``dataset`` exactly as ``Trainer.batches`` draws them (same
    sampler and ``cfg.workers``)."""
    loader = DataLoader(dataset, batch_sampler=StepSampler(0, 1 << 40, cfg.batch_size), num_workers=cfg.workers)
    return iter(loader)


class TimedStep:
    """One training setting: the real model (in ``precision``), renderer and ``recon.training.TrainStep``
    of ``cfg`` (the step ``Trainer`` trains with) at step 0 of its schedule, fed from ``data`` (random
    pairs when None). ``step()`` runs one training step and times its parts through the step's
    ``mark`` callback: forward phases end at the marks, backward phases when the gradient of the
    marked tensor arrives (tensor hooks), so the step itself is untouched."""

    def __init__(self, cfg: TrainConfig, precision: str, device: torch.device, data: str | None = None):
        self.device, self.precision = device, precision
        dataset = PairDataset(data, "train", seed=cfg.seed, with_voxels=False) if data is not None else None
        size = dataset.info.image_size if dataset is not None else 64
        torch.manual_seed(cfg.seed)
        model = Reconstructor(cfg.encoder, image_size=size, precision=precision).to(device)
        _, sigma = schedule(cfg, 0)
        self.renderer = get_renderer(cfg.backend, sigma=sigma, eps=cfg.eps, image_size=size, impl=cfg.impl,
                                     device=str(device))
        self.train_step = TrainStep.build(cfg, model, self.renderer, device)
        self.fixed = _random_pairs(cfg.batch_size, device) if dataset is None else None
        self.batches = _data_batches(dataset, cfg) if dataset is not None else None

    def _clock(self) -> float:
        _sync(self.device)
        return time.perf_counter()

    def step(self) -> dict[str, float]:
        """One step; milliseconds of ``data`` (waiting for the loader), ``network``, ``render``,
        ``loss`` (forward and backward of each), ``optimizer`` (the gradients' finiteness check and
        Adam), their ``total`` and the process CPU time ``cpu``."""
        cpu, t0 = time.process_time(), self._clock()
        pairs = next(self.batches) if self.batches is not None else self.fixed
        at: dict[str, float] = {"start": self._clock()}

        def mark(phase: str, tensor: torch.Tensor | None) -> None:
            at[phase] = self._clock()
            if tensor is not None and tensor.requires_grad:  # its gradient arrives when its backward is done
                tensor.register_hook(lambda grad, name=f"{phase}_grad": at.__setitem__(name, self._clock()))

        self.train_step(pairs, 0, mark=mark)
        end = at.get("optimizer", self._clock())  # a skipped step (non-finite) has no optimizer phase
        ms = {"data": at["start"] - t0,
              "network": (at["network"] - at["start"]) + (at["backward"] - at["network_grad"]),
              "render": (at["render"] - at["network"]) + (at["network_grad"] - at["render_grad"]),
              "loss": (at["loss"] - at["render"]) + (at["render_grad"] - at["loss"]),
              "optimizer": end - at["backward"], "total": end - t0, "cpu": time.process_time() - cpu}
        return {k: v * 1e3 for k, v in ms.items()}


def _medians(steps: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(s[k] for s in steps) for k in steps[0]}


def bench_train_step(batch: int = 64, device: str = "cpu", impl: str = "auto", encoder: str = "baseline",
                     repeats: int = 3, cfg: TrainConfig | None = None, precision: str = "fp32") -> dict[str, float]:
    """One training step of ``cfg`` (default: the ``TrainConfig`` defaults with ``encoder``, ``impl`` and
    ``batch``) in ``precision`` on random 64x64 images with binary alpha: 2B images -> 4B renders,
    the real objective and optimizer at step 0 of the schedule (``TimedStep``: the real ``TrainStep``), medians of ``repeats``
    after one warm-up step.

    Returns:
        milliseconds for ``network``, ``render``, ``loss``, ``optimizer``, ``total``, the ``render_fraction``
        and the softras ``impl`` used.
    """
    cfg = cfg or TrainConfig(encoder=encoder, impl=impl, batch_size=batch)
    rig = TimedStep(cfg, precision, torch.device(device))
    rig.step()  # warm-up (kernel build, allocator)
    med = _medians([rig.step() for _ in range(repeats)])
    out: dict[str, Any] = {k: med[k] for k in ("network", "render", "loss", "optimizer")}
    out["total"] = sum(out.values())
    out["render_fraction"] = out["render"] / out["total"]
    out["impl"] = getattr(rig.renderer, "impl", cfg.impl)
    return out


class BusyProcess:
    """A competing process that keeps one core busy while the context is open (a pure-Python spin
    loop, so it takes a whole core without touching memory much)."""

    def __enter__(self) -> "BusyProcess":
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        time.sleep(0.2)  # let it get scheduled
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait()


@dataclass
class StepRecord:
    """A training-step setting measured by ``bench_training_steps`` (medians, milliseconds): waiting
    for the data loader, network forward+backward, render, loss, Adam, their total (wall), the
    process CPU time per step and, with ``contention``, the total while another process keeps
    one core busy (None when not measured)."""

    precision: str
    batch: int
    threads: int
    total_ms: float
    data_ms: float
    network_ms: float
    render_ms: float
    loss_ms: float
    optimizer_ms: float
    cpu_ms: float
    busy_total_ms: float | None = None


def bench_training_steps(data: str | None, batches: tuple[int, ...] = (16, 64),
                         precisions: tuple[str, ...] = ("fp32", "bf16"), repeats: int = 3, device: str = "cpu",
                         encoder: str = "baseline", workers: int = 0, contention: bool = False,
                         note: Callable[[str], None] | None = None) -> list[StepRecord]:
    """The full training step (data, network, render, loss, optimizer) per precision and batch,
    every precision of a batch measured in turn within each round so that a busy machine slows
    them alike; with ``contention`` each round is measured again next to a ``BusyProcess``.

    Args:
        data: dataset the batches are loaded from, as in training (random pairs when None).
        repeats: timed rounds (after one warm-up step per setting).
        note: called with a line per batch size as it is measured.
    """
    dev = torch.device(device)
    records: list[StepRecord] = []
    for batch in batches:
        if note is not None:
            note(f"training step, batch {batch}: {', '.join(precisions)} x {repeats} rounds"
                 + (" (quiet, then next to a busy process)" if contention else ""))
        cfg = TrainConfig(encoder=encoder, batch_size=batch, workers=workers)
        rigs = {p: TimedStep(cfg, p, dev, data) for p in precisions}
        quiet: dict[str, list[dict[str, float]]] = {p: [] for p in precisions}
        busy: dict[str, list[float]] = {p: [] for p in precisions}
        for rig in rigs.values():
            rig.step()
        for _ in range(repeats):
            for p, rig in rigs.items():
                quiet[p].append(rig.step())
            if contention:
                with BusyProcess():
                    for p, rig in rigs.items():
                        busy[p].append(rig.step()["total"])
        for p in precisions:
            m = _medians(quiet[p])
            records.append(StepRecord(p, batch, torch.get_num_threads(), m["total"], m["data"], m["network"],
                                      m["render"], m["loss"], m["optimizer"], m["cpu"],
                                      statistics.median(busy[p]) if busy[p] else None))
        del rigs
    return records


def auto_precision(batch: int, device: str = "cpu", encoder: str = "baseline") -> PrecisionChoice:
    """What ``--precision auto`` resolves to for training ``encoder`` at ``batch`` on ``device``."""
    torch.manual_seed(0)
    model = Reconstructor(encoder).to(device)
    return choose_training_precision("auto", model, 2 * batch, 64, torch.device(device))


def step_ratios(records: list[StepRecord]) -> dict[str, float]:
    """fp32/bf16 total step time per batch (the bf16 speedup), quiet and next to a busy process."""
    by = {(r.precision, r.batch): r for r in records}
    out: dict[str, float] = {}
    for (p, batch), r in by.items():
        if p == "bf16" and ("fp32", batch) in by:
            f = by[("fp32", batch)]
            out[f"fp32/bf16 step@{batch}"] = f.total_ms / r.total_ms
            if f.busy_total_ms and r.busy_total_ms:
                out[f"fp32/bf16 step@{batch} busy"] = f.busy_total_ms / r.busy_total_ms
    return out


def _contention_child(threads: int, seconds: float, batch: int, precision: str) -> None:
    """Run in a fresh process by ``bench_contention``: training steps per second on random pairs,
    alternately quiet and next to a ``BusyProcess``, two rounds; prints one JSON line."""
    tune_allocator()
    torch.set_num_threads(threads)
    rig = TimedStep(TrainConfig(batch_size=batch), precision, torch.device("cpu"))
    rig.step()

    def rate() -> float:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            rig.step()
            n += 1
        return n / (time.perf_counter() - t0)

    quiet, busy = [], []
    for _ in range(2):
        quiet.append(rate())
        with BusyProcess():
            busy.append(rate())
    print(json.dumps({"quiet_it_s": statistics.median(quiet), "busy_it_s": statistics.median(busy)}))


def bench_contention(threads: tuple[int, ...] = (1, 2), policies: tuple[str, ...] = ("default", "PASSIVE"),
                     seconds: float = 8.0, batch: int = 16, precision: str = "bf16",
                     note: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Training throughput alone and next to a process that keeps one core busy, per intra-op thread
    count and OpenMP wait policy (``default``: OMP_WAIT_POLICY unset, i.e. spin then sleep; ``PASSIVE``;
    ``spin=N``: GNU OpenMP's GOMP_SPINCOUNT=N, spin N iterations then sleep). Each
    setting runs in a fresh process, since OpenMP reads its policy once at start.

    Returns:
        records ``{threads, policy, quiet_it_s, busy_it_s, kept}`` (``kept``: busy / quiet).
    """
    out = []
    for policy in policies:
        for n in threads:
            if note is not None:
                note(f"contention: {n} thread(s), OMP_WAIT_POLICY={policy}")
            env = {k: v for k, v in os.environ.items()
                   if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
            if policy.startswith("spin="):
                env["GOMP_SPINCOUNT"] = policy[5:]
            elif policy != "default":
                env["OMP_WAIT_POLICY"] = policy
            code = (f"from tools.bench import _contention_child; "
                    f"_contention_child({n}, {seconds!r}, {batch}, {precision!r})")
            res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                raise RuntimeError(f"contention child ({n} threads, {policy}) failed: {res.stderr.strip()[-500:]}")
            rec = json.loads(res.stdout.strip().splitlines()[-1])
            out.append({"threads": n, "policy": policy, **rec, "kept": rec["busy_it_s"] / rec["quiet_it_s"]})
    return out


def bench_layouts(encoders: tuple[str, ...] = ("baseline", "resnet", "attention"), batches: tuple[int, ...] = (16, 64),
                  precisions: tuple[str, ...] = ("fp32", "bf16"), repeats: int = 3,
                  device: str = "cpu") -> list[dict[str, Any]]:
    """Network forward + backward + Adam per encoder, batch (pairs: 2B images), precision and memory
    layout (``contiguous`` NCHW / ``channels_last`` NHWC), the settings of one encoder and batch
    measured in turn within each round. Behind ``encoders.CHANNELS_LAST``.

    Returns:
        records ``{encoder, batch, precision, layout, ms, cpu_ms}`` (medians; ``cpu_ms``: process CPU time).
    """
    dev = torch.device(device)
    out: list[dict[str, Any]] = []
    for encoder in encoders:
        for batch in batches:
            images = torch.rand(2 * batch, 4, 64, 64, generator=torch.Generator().manual_seed(0)).to(dev)
            rigs = {}
            for p in precisions:
                for layout in ("contiguous", "channels_last"):
                    torch.manual_seed(0)
                    model = Reconstructor(encoder, precision=p).to(dev)
                    model.memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
                    model.encoder.to(memory_format=model.memory_format)
                    rigs[(p, layout)] = (model, make_optimizer(model, 1e-4))
            times: dict[tuple[str, str], list[tuple[float, float]]] = {k: [] for k in rigs}
            for rnd in range(repeats + 1):
                for key, (model, opt) in rigs.items():
                    cpu, t = time.process_time(), time.perf_counter()
                    model(images).square().mean().backward()
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                    _sync(dev)
                    if rnd:  # round 0 warms up
                        times[key].append(((time.perf_counter() - t) * 1e3, (time.process_time() - cpu) * 1e3))
            for (p, layout), ts in times.items():
                out.append({"encoder": encoder, "batch": batch, "precision": p, "layout": layout,
                            "ms": statistics.median(w for w, _ in ts), "cpu_ms": statistics.median(c for _, c in ts)})
    return out


def bench_voxelize(batch: int = 64, repeats: int = 3) -> float:
    """Closed-mesh voxelization throughput at 32^3 (meshes/s) on 1280-face deformed spheres."""
    verts, faces = deformed_spheres(batch, 3, "cpu")
    ms = time_fn(lambda: voxelize(verts, faces), torch.device("cpu"), repeats)
    return batch / (ms / 1e3)


def bench_protocols(batch: int = 64, repeats: int = 3) -> dict[str, float | str]:
    """3D-IoU protocol throughput at 32^3, in meshes/s, side by side on the same 1280-face deformed
    spheres: ``softras/cpp`` (the C++ kernel), ``softras/torch`` (the tensor reference) and ``exact``
    (ray parity, ``recon.ops.voxelize_exact.voxelize``). An implementation that cannot run here gives the reason
    (a str) instead of a number."""
    from recon.errors import ExtensionUnavailable
    from recon.ops.voxelize import voxelize_softras

    verts, faces = deformed_spheres(batch, 3, "cpu")
    cpu = torch.device("cpu")
    out: dict[str, float | str] = {}
    for impl in ("cpp", "torch"):
        try:
            ms = time_fn(lambda: voxelize_softras(verts, faces, 32, impl), cpu, repeats)
            out[f"softras/{impl}"] = batch / (ms / 1e3)
        except ExtensionUnavailable as e:
            out[f"softras/{impl}"] = str(e).splitlines()[0]
    out["exact"] = batch / (time_fn(lambda: voxelize(verts, faces), cpu, repeats) / 1e3)
    return out


def records_as_dicts(records: list[BenchRecord]) -> list[dict]:
    return [asdict(r) for r in records]
