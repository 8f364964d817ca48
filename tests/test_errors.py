"""The error model (recon.errors, pipelines.cli.user_errors): a user error is one line and exit
status 2, anything else is a bug with its traceback and exit status 1; RECON_DEBUG / --debug show
the traceback of user errors too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from recon.errors import ConfigError, ExtensionUnavailable, InputError, MissingPathError, UserError

REPO = Path(__file__).resolve().parent.parent


def _run(module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k != "RECON_DEBUG"}
    environ.update({"PYTHONPATH": str(REPO), **(env or {})})
    return subprocess.run([sys.executable, "-m", f"pipelines.{module}", *args], cwd=REPO, env=environ,
                          capture_output=True, text=True, timeout=120)


def _convert(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    from pipelines.convert import main

    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = int(e.code)
    return code, capsys.readouterr().err


def test_malformed_file_is_one_line_exit_2_and_debug_shows_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_text("not an HDF5 file")
    plain = _run("convert", "validate", str(bad))
    assert plain.returncode == 2, plain.stderr
    assert plain.stderr.strip().splitlines() == [f"error: {bad}: /: not an HDF5 file (expected a recon-hdf5 dataset)"]
    for debug in (_run("convert", "validate", str(bad), env={"RECON_DEBUG": "1"}),
                  _run("convert", "validate", "--debug", str(bad))):
        assert debug.returncode == 2, debug.stderr
        assert "Traceback (most recent call last)" in debug.stderr and "DatasetFormatError" in debug.stderr
        assert debug.stderr.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.parametrize("error", [ValueError("a programming error"), KeyError("missing_key"),
                                   OSError(5, "Input/output error")])
def test_internal_error_is_a_bug_with_traceback_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch, error: Exception) -> None:
    """A ValueError / KeyError / OSError that is not a UserError used to be (or crash as) bad input."""
    import recon.workflows.convert

    def broken(cfg):
        raise error

    monkeypatch.setattr(recon.workflows.convert, "convert", broken)
    code, err = _convert(capsys, "synthetic", "--out", tmp_path / "x.h5", "--per-category", "1", "--no-progress")
    assert code == 1, err
    assert "Traceback (most recent call last)" in err and f"in broken\n    raise error" in err
    last = err.strip().splitlines()[-1]
    assert last == f"error: internal error ({type(error).__name__}): this is a bug in recon, not a problem with your " \
                   "input: please report it with the traceback above and the command line that caused it"


def test_user_error_raised_anywhere_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import recon.workflows.convert

    def refuse(cfg):
        raise InputError(f"{cfg.out}: something the user can fix")

    monkeypatch.setattr(recon.workflows.convert, "convert", refuse)
    code, err = _convert(capsys, "synthetic", "--out", tmp_path / "x.h5", "--no-progress")
    assert code == 2 and err.strip().splitlines() == [f"error: {tmp_path / 'x.h5'}: something the user can fix"]


def test_error_classes_keep_their_builtin_bases() -> None:
    """Callers that catch ValueError / OSError / RuntimeError still catch the user errors."""
    from recon.checkpoint import CheckpointError
    from recon.data.image_io import ImageError
    from recon.data.meshes import MeshError
    from recon.data.schema import DatasetFormatError
    from recon.data.softras_npz import NpzFormatError
    from recon.io import OutputPathError, OutputWriteError
    from recon.ops.voxelize_softras_ext import VoxelizerUnavailable
    from recon.render.base import BackendUnavailable
    from recon.runs import RunLockedError
    from recon.training import TrainingError

    for cls in (ConfigError, InputError, DatasetFormatError, CheckpointError, MeshError, ImageError, NpzFormatError,
                OutputPathError, RunLockedError):
        assert issubclass(cls, UserError) and issubclass(cls, ValueError), cls
    for cls in (BackendUnavailable, VoxelizerUnavailable, TrainingError, ExtensionUnavailable):
        assert issubclass(cls, UserError) and issubclass(cls, RuntimeError), cls
    assert issubclass(MissingPathError, FileNotFoundError) and issubclass(OutputWriteError, OSError)
    assert not issubclass(VoxelizerUnavailable, BackendUnavailable)  # the voxelizer is not a renderer


def test_unwritable_output_is_a_user_error_naming_the_file(tmp_path: Path) -> None:
    from recon.io import OutputWriteError, atomic_write_bytes

    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "sub" / "out.json"  # a folder under a regular file
    with pytest.raises(OutputWriteError) as e:
        atomic_write_bytes(target, b"{}")
    assert isinstance(e.value, UserError) and str(e.value).startswith(f"{target}: cannot write (")


def test_flag_errors_are_config_errors() -> None:
    from recon.config import EvalConfig, TrainConfig

    with pytest.raises(ConfigError, match="--lr must be a positive finite number"):
        TrainConfig(lr=-1.0).validate()
    with pytest.raises(ConfigError, match="--max-per-category must be >= 0"):
        EvalConfig(checkpoint="run", max_per_category=-1).validate()


@pytest.mark.parametrize("command", ["bench", "gpucheck"])
def test_tooling_commands_outside_the_source_tree_say_so(command: str) -> None:
    # an installed wheel has recon/ and pipelines/ but not tools/: simulate it by hiding the package
    code = f"import sys; sys.modules['tools'] = None; from pipelines.{command} import main; main([])"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pipelines.{command} needs tools.{command}" in lines[0] \
        and "clone of the repository" in lines[0], proc.stderr
