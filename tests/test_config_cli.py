"""Configs composed, not copied: every command's flags come from dataclasses, flag checks are pure,
``--help`` loads no torch, and the old flags (names, defaults) keep working."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from recon import choices
from recon.config import (BenchConfig, CompareConfig, ConvertConfig, DemoConfig, EvalConfig, GpuCheckConfig,
                          PredictConfig, TrainConfig, config_from_args)

REPO = Path(__file__).resolve().parent.parent
PIPELINES = ("train", "eval", "demo", "compare", "convert", "bench", "predict", "gpucheck")
CONFIGS = {"train": TrainConfig, "eval": EvalConfig, "demo": DemoConfig, "compare": CompareConfig,
           "convert": ConvertConfig, "bench": BenchConfig, "predict": PredictConfig, "gpucheck": GpuCheckConfig}


def test_help_of_every_command_loads_no_torch() -> None:
    """Each command's --help (and convert's subcommands') in a fresh interpreter, which then reports
    the heavy modules it loaded."""
    script = (
        "import runpy, sys\n"
        "cmd = sys.argv[1:]\n"
        "sys.argv = ['x', *cmd[1:], '--help']\n"
        "try:\n    runpy.run_module('pipelines.' + cmd[0], run_name='__main__')\n"
        "except SystemExit as e:\n    assert e.code == 0, e.code\n"
        "heavy = sorted(m for m in sys.modules if m in ('torch', 'h5py', 'numpy') or m.startswith("
        "('recon.data', 'recon.models', 'recon.render', 'recon.ops', 'recon.training', 'recon.workflows', "
        "'tools')))\n"
        "print('HEAVY', *heavy)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for cmd in [[p] for p in PIPELINES] + [["convert", c] for c in ("synthetic", "meshes", "softras", "validate")]:
        proc = subprocess.run([sys.executable, "-c", script, *cmd[:1], *cmd[1:]], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, (cmd, proc.stderr)
        assert "usage: python -m pipelines." + cmd[0] in proc.stdout, cmd
        assert proc.stdout.strip().splitlines()[-1] == "HEAVY", (cmd, proc.stdout.strip().splitlines()[-1])


def test_config_module_imports_nothing_heavy() -> None:
    code = ("import sys, recon.config\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith(('recon.data', 'recon.models', "
            "'recon.ops', 'recon.render', 'recon.workflows'))))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", (proc.stdout, proc.stderr)


def _parsers(name: str) -> list[tuple[argparse.ArgumentParser, str | None]]:
    parser = importlib.import_module(f"pipelines.{name}").build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if subs:
        return [(p, command) for command, p in subs[0].choices.items()]
    return [(parser, None)]


def _field_names(cls: type) -> set[str]:
    names = set()
    for f in dataclasses.fields(cls):
        if f.metadata.get("nested"):
            names |= {g.name for g in dataclasses.fields(f.default_factory())}
        else:
            names.add(f.name)
    return names


@pytest.mark.parametrize("name", PIPELINES)
def test_every_flag_is_a_dataclass_field(name: str) -> None:
    """No hand-written flag beside the dataclass: every option's destination is a config field."""
    fields = _field_names(CONFIGS[name])
    for parser, command in _parsers(name):
        dests = {a.dest for a in parser._actions if not isinstance(a, argparse._HelpAction)} - {"debug"}
        assert dests and dests <= fields, (name, command, dests - fields)


# flags and defaults of the commands whose parsers were hand-written (or copied) before
_OLD = {
    ("convert", "synthetic"): {"--out": None, "--classes": None, "--workers": None, "--no-progress": False,
                               "--per-category": 300, "--val": None, "--test": None, "--seed": 0},
    ("convert", "meshes"): {"--out": None, "--classes": None, "--workers": None, "--no-progress": False,
                            "--src": None, "--split": "0.8,0.1,0.1", "--seed": 0},
    ("convert", "softras"): {"--out": None, "--classes": None, "--no-progress": False, "--src": None,
                             "--voxel-axes": "auto"},
    ("bench", None): {"--quick": False, "--device": "cpu", "--json": None, "--impls": None, "--step-batches": "16,64",
                      "--precision": "all", "--data": None, "--workers": 0, "--threads": 0, "--contention": False,
                      "--layouts": False},
    ("predict", None): {"--checkpoint": None, "--out": None, "--device": "auto", "--precision": "auto",
                        "--framing": None, "--fill": None, "--view": None},
    ("gpucheck", None): {"--out": "gpu_check", "--dry-run": False, "--train-steps": 300, "--no-tests": True,
                         "--work": None, "--budget-s": 420.0},
    ("demo", None): {"--data": "data/synthetic.h5", "--out": "runs/demo", "--encoder": "baseline",
                     "--per-category": 300, "--budget-minutes": 10.0, "--iterations": 0, "--batch-size": 0,
                     "--lr": 5e-4, "--decay-at": 0.6, "--lr-schedule": "step", "--device": "auto",
                     "--precision": "auto", "--threads": 0, "--seed": 0},
}


@pytest.mark.parametrize("name, command", list(_OLD))
def test_old_flags_and_defaults_kept(name: str, command: str | None) -> None:
    parser = dict((c, p) for p, c in _parsers(name))[command]
    actions = {s: a for a in parser._actions for s in a.option_strings}
    for flag, default in _OLD[(name, command)].items():
        assert flag in actions, (name, command, flag)
        if not actions[flag].required:
            assert actions[flag].default == default, (name, command, flag, actions[flag].default)


def test_demo_holds_a_train_config_with_its_defaults() -> None:
    from pipelines.demo import build_parser

    assert not {f.name for f in dataclasses.fields(DemoConfig)} & {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = config_from_args(DemoConfig, build_parser().parse_args(["--lr", "0.001", "--budget-minutes", "3"]))
    assert isinstance(cfg.train, TrainConfig) and cfg.train.lr == 0.001 and cfg.budget_minutes == 3
    assert (cfg.train.out, cfg.train.iterations, cfg.train.batch_size) == ("runs/demo", 0, 0)
    assert dataclasses.replace(cfg.train, out="runs/run", iterations=250_000, batch_size=64, lr=1e-4) == TrainConfig()
    assert DemoConfig.of(data="d.h5", per_category=5).train.data == "d.h5"


def test_compare_shares_its_training_flags() -> None:
    from pipelines.compare import parse_config

    cfg = parse_config(["--iterations", "7", "--lr", "0.01", "--out", "o"])
    assert (cfg.train.iterations, cfg.train.lr, cfg.out, cfg.train.out) == (7, 0.01, "o", "runs/run")
    assert parse_config([]).train.iterations == 0  # the budget per encoder is always given (or by a preset)


def test_flag_checks_read_no_file(tmp_path: Path) -> None:
    """validate() judges the values alone: paths that do not exist are the workflows' business."""
    missing = str(tmp_path / "nowhere" / "x")
    TrainConfig(data=missing, out=missing, val_views="0,25").validate()
    EvalConfig(checkpoint=missing, data=missing, json=missing, out=missing).validate()
    CompareConfig(train=TrainConfig(data=missing, iterations=1), out=missing, classes="chair").validate()
    DemoConfig.of(data=missing, out=missing).validate()
    GpuCheckConfig(out=missing, work=missing).validate()
    PredictConfig(images=[missing], checkpoint=missing, out=missing).validate()
    BenchConfig(data=missing, json=missing).validate()
    ConvertConfig(command="synthetic", out=missing).validate()


def test_all_objects_has_one_spelling() -> None:
    assert EvalConfig().max_per_category == CompareConfig().max_per_category == choices.ALL == 0
    EvalConfig(checkpoint="run", max_per_category=0).validate()  # 0 = all, as --val-objects and compare


def test_names_written_once() -> None:
    from recon import render
    from recon.models import encoders
    from recon.models.colour_heads import COLOUR_HEADS
    from recon.ops import voxelize as protocols
    from recon.ops.impl import CHOICES

    eval_protocol = {f.name: f for f in dataclasses.fields(EvalConfig)}["protocol"].metadata["choices"]
    compare_protocol = {f.name: f for f in dataclasses.fields(CompareConfig)}["protocol"].metadata["choices"]
    assert eval_protocol is compare_protocol is choices.PROTOCOL_CHOICES  # the names + the old name softras
    assert protocols.PROTOCOLS is choices.PROTOCOLS and set(choices.PROTOCOLS) < set(choices.PROTOCOL_CHOICES)
    # the registries map exactly the names the flags offer
    assert tuple(render.BACKENDS) == choices.BACKENDS and tuple(encoders.ENCODERS) == choices.ENCODERS
    assert tuple(COLOUR_HEADS) == choices.COLOUR_HEADS and CHOICES == choices.IMPLS
