"""JIT build of the SoftRas voxelization kernel (``csrc/softras_voxel.cpp``, CPU only).

Built on first use with ``torch.utils.cpp_extension.load`` into
``$RECON_EXT_DIR/recon_softras_voxel/<key>`` (default ``~/.cache/recon/torch_extensions/...``),
like the renderer's kernels (:mod:`recon.render.softras_ext`); ``<key>`` hashes the source, the
flags and the torch version. A missing compiler or a failed build raises
:class:`~recon.render.base.BackendUnavailable` with the reason, cached for the process.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import torch

from recon.render.base import BackendUnavailable
from recon.render.softras_ext import build_dir

__all__ = ["BackendUnavailable", "EXTENSION_NAME", "load_voxel_extension"]

EXTENSION_NAME = "recon_softras_voxel"
_SOURCE = Path(__file__).resolve().parent / "csrc" / "softras_voxel.cpp"
# -ffp-contract=off and no -ffast-math: the column test must round exactly like the reference.
_CFLAGS = ["-O3", "-fopenmp", "-ffp-contract=off"]
_ERROR_TAIL = 3000
_CACHE: list[ModuleType | BackendUnavailable] = []


def _build_key() -> str:
    h = hashlib.sha256()
    for part in (torch.__version__, sys.version, os.environ.get("CXX", ""), str(_SOURCE), *_CFLAGS):
        h.update(part.encode() + b"\0")
    h.update(_SOURCE.read_bytes())
    return h.hexdigest()[:16]


def _missing_toolchain() -> str | None:
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        return f"no C++ compiler found ({cxx!r} is not on PATH; install g++ or set CXX)"
    if shutil.which("ninja") is None:
        try:
            import ninja  # noqa: F401
        except ImportError:
            return "ninja is not installed (pip install ninja)"
    return None


def load_voxel_extension(verbose: bool = False) -> ModuleType:
    """Build (first call, about a minute) or load the kernel.

    Returns:
        The extension module with ``voxelize(coords, faces, resolution)``.
    Raises:
        BackendUnavailable: no compiler / ninja, or the build failed.
    """
    if _CACHE:
        if isinstance(_CACHE[0], BackendUnavailable):
            raise _CACHE[0]
        return _CACHE[0]
    reason = _missing_toolchain()
    if reason is None:
        from torch.utils import cpp_extension

        try:
            module = cpp_extension.load(
                name=EXTENSION_NAME, sources=[str(_SOURCE)], extra_cflags=_CFLAGS, extra_ldflags=["-fopenmp"],
                build_directory=str(build_dir(EXTENSION_NAME, _build_key())), verbose=verbose)
            _CACHE.append(module)
            return module
        except (RuntimeError, OSError, ImportError, subprocess.SubprocessError) as e:
            reason = (f"building {EXTENSION_NAME} failed (build dir from $RECON_EXT_DIR or "
                      f"~/.cache/recon/torch_extensions):\n{str(e)[-_ERROR_TAIL:]}")
    err = BackendUnavailable(f"softras voxelization kernel unavailable: {reason}")
    _CACHE.append(err)
    raise err
