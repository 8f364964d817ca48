"""The error model: what the user can fix is a ``UserError``; everything else is a bug.

A ``UserError`` says in one line what was wrong, where (the flag or the file) and what was
expected; the command-line front ends (``pipelines.cli.user_errors``) print it as
``error: <message>`` and exit with status 2. Any other exception reaching them is a bug in recon:
they print its traceback and how to report it, and exit with status 1. ``RECON_DEBUG=1`` (or a
command's ``--debug``) shows the traceback of a user error too.

The subclasses keep the built-in base their callers already catch: a ``ConfigError`` is also a
``ValueError``, a ``MissingPathError`` a ``FileNotFoundError``, a ``PathPermissionError`` a
``PermissionError``, an ``ExtensionUnavailable`` a ``RuntimeError``. Library modules define their own
subclasses where the name helps (``recon.data.schema.DatasetFormatError``,
``recon.checkpoint.CheckpointError``, ``recon.io.OutputPathError``, the renderers'
``recon.ops.unavailable.BackendUnavailable``, the voxelizer's
``recon.ops.voxelize_softras_ext.VoxelizerUnavailable``, ...).

A stop signal is not an error: ``recon.signals.Interrupted`` stays a ``KeyboardInterrupt`` (so no
``except Exception`` swallows it) and the front ends end with one line and status 130 / 143.

This module imports nothing from recon (every layer may raise these).
"""

from __future__ import annotations

__all__ = ["UserError", "ConfigError", "InputError", "MissingPathError", "PathPermissionError", "ExtensionUnavailable"]


class UserError(Exception):
    """Something the user can fix: a bad flag value, a missing or malformed input, an output that
    cannot be written, a backend this machine cannot run. The message is one line naming the flag or
    file and what was expected."""


class ConfigError(UserError, ValueError):
    """A flag value (or combination of flags) that cannot work; the message names the flag."""


class InputError(UserError, ValueError):
    """An input the user gave (a file, a folder, a run directory) that cannot be used as it is;
    the message names it and says what was expected."""


class MissingPathError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist (or holds none of the files expected); the
    message names it."""


class PathPermissionError(UserError, PermissionError):
    """A file or folder the user named cannot be read (permission denied); the message names it."""


class ExtensionUnavailable(UserError, RuntimeError):
    """A compiled kernel or optional package cannot run on this machine (no compiler, no CUDA, not
    installed, the build failed); the message says what is missing and how to get it."""
