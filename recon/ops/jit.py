"""The one JIT loader of our C++/CUDA extensions (renderer kernels and the voxelization kernel).

An extension is described by a :class:`JitSpec` (module name, sources, include folders, flags). It
is compiled on first use with ``torch.utils.cpp_extension.load`` into
``$RECON_EXT_DIR/<name>/<key>`` (default ``~/.cache/recon/torch_extensions/<name>/<key>``) and
cached for the process. ``<key>`` hashes the sources, every file of the include folders, their
location, the flags, the compiler and the Python and torch versions, so checkouts and versions
never share (or overwrite) a build. A missing compiler, ninja, nvcc or CUDA, or a failed build,
raises the spec's :class:`~recon.errors.ExtensionUnavailable` (``"<label> unavailable: <reason>"``, with the
compiler's error tail), also remembered for the process.

Builds survive killed builders. ``torch.utils.cpp_extension`` serialises builds of one folder with
a ``lock`` file that only the builder removes, so a builder killed mid-build (SIGKILL, a pool
terminating its workers, a test timeout) leaves it behind and every later load waits on it
forever. We hold an OS file lock (``flock``, released by the kernel when its holder dies) on
``<build dir>/build.flock`` around each build: whoever holds it knows no live process of ours is
building there, so a ``lock`` file it finds is stale and goes. Ninja then redoes every step its
``.ninja_log`` does not record as finished (an output without a log entry counts as out of date),
so a half-written object is rebuilt and a finished build is reused as is (most killed loaders die
during the up-to-date check, not a compile). Without a ``.ninja_log`` no step finished: the folder
is emptied and built from scratch.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch

from recon.errors import ExtensionUnavailable

__all__ = ["CPU_FLAGS", "JitSpec", "build_dir", "missing_toolchain", "load"]

# Flags of every CPU kernel. No -march (the build must run on any x86-64; the kernels pick AVX2 at
# run time) and no -ffast-math (parity with the torch references); -ffp-contract=off keeps FMA
# contraction from changing rounding on targets that have FMA; -Wno-psabi silences a note about
# passing 32-byte double vectors between inline helpers.
CPU_FLAGS = ("-O3", "-fopenmp", "-ffp-contract=off", "-Wno-psabi")
_ERROR_TAIL = 3000
# Per-process cache: module name -> loaded module, or the ExtensionUnavailable that building it raised.
_CACHE: dict[str, ModuleType | ExtensionUnavailable] = {}


@dataclass(frozen=True)
class JitSpec:
    """One extension build.

    Attributes:
        name: Python module name of the build (also its cache folder).
        label: what errors call it, e.g. ``"softras cpp kernel"``.
        sources: files to compile.
        include_dirs: header folders (every file in them is part of the build key).
        cflags, cuda_flags, ldflags: compiler / nvcc / linker flags.
        cuda: compiled with nvcc: needs a CUDA build of torch, a GPU and the CUDA toolkit.
        unavailable: the error a failed build raises (the caller's ``ExtensionUnavailable`` subclass:
            the renderer's kernels raise ``BackendUnavailable``, the voxelizer its own).
    """

    name: str
    label: str
    sources: tuple[Path, ...]
    include_dirs: tuple[Path, ...] = ()
    cflags: tuple[str, ...] = CPU_FLAGS
    cuda_flags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ("-fopenmp",)
    cuda: bool = False
    unavailable: type[ExtensionUnavailable] = ExtensionUnavailable


def build_dir(name: str, key: str = "") -> Path:
    """Build directory for extension ``name`` (created): ``$RECON_EXT_DIR/<name>/<key>`` or
    ``~/.cache/recon/torch_extensions/<name>/<key>``."""
    root = os.environ.get("RECON_EXT_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "recon" / "torch_extensions"
    path = base / name / key if key else base / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def build_key(spec: JitSpec) -> str:
    """16 hex digits naming this build of ``spec`` (see the module doc)."""
    h = hashlib.sha256()
    for part in (torch.__version__, sys.version, os.environ.get("CXX", ""), spec.name, *spec.cflags,
                 *spec.cuda_flags, *spec.ldflags):
        h.update(part.encode() + b"\0")
    files = set(spec.sources) | {f for d in spec.include_dirs for f in d.iterdir() if f.is_file()}
    for f in sorted(files):
        h.update(str(f).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def missing_toolchain(cuda: bool) -> str | None:
    """Why an extension (a CUDA one when ``cuda``) cannot be built here, or None."""
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        return f"no C++ compiler found ({cxx!r} is not on PATH; install g++ or set CXX)"
    if shutil.which("ninja") is None:
        try:
            import ninja  # noqa: F401  (optional: the pip package puts the binary next to the interpreter)
        except ImportError:
            return "ninja is not installed (pip install ninja)"
    if cuda:
        if torch.version.cuda is None:
            return f"this PyTorch build ({torch.__version__}) has no CUDA support"
        if not torch.cuda.is_available():
            return "CUDA is not available (no GPU or driver)"
        # imported here, not at the top: it pulls in setuptools, which a bare GPU machine may lack
        from torch.utils.cpp_extension import CUDA_HOME

        if CUDA_HOME is None:
            return "nvcc / the CUDA toolkit was not found (set CUDA_HOME)"
    return None


TORCH_LOCK = "lock"  # the FileBaton file torch.utils.cpp_extension keeps in a folder while building it
FLOCK = "build.flock"  # our OS-level lock beside it (see the module doc)
NINJA_LOG = ".ninja_log"  # ninja's record of the build steps that finished


@contextlib.contextmanager
def exclusive_build(folder: Path) -> Iterator[None]:
    """Hold the OS lock of build folder ``folder`` (waits while another live process builds there).
    Inside, a leftover torch ``lock`` file is stale: it is removed, and the folder emptied too when no
    build step ever finished there (no ``.ninja_log``; see the module doc)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no flock; torch's own lock file only
        yield
        return
    with open(folder / FLOCK, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released by close below, or by the kernel if we die
        try:
            if (folder / TORCH_LOCK).exists() and (folder / NINJA_LOG).exists():  # its builder died
                (folder / TORCH_LOCK).unlink()  # ninja redoes the steps it did not log as finished
            elif (folder / TORCH_LOCK).exists():  # ... before any build step finished: start afresh
                for entry in folder.iterdir():
                    if entry.name != FLOCK:
                        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(spec: JitSpec, verbose: bool) -> ModuleType:
    # imported on the first build, not at the top: it pulls in setuptools, and a missing setuptools
    # must become ExtensionUnavailable (below), not an import error of the renderer
    from torch.utils import cpp_extension

    folder = build_dir(spec.name, build_key(spec))
    with exclusive_build(folder):
        return cpp_extension.load(
            name=spec.name,
            sources=[str(s) for s in spec.sources],
            extra_cflags=list(spec.cflags),
            extra_cuda_cflags=list(spec.cuda_flags),
            extra_ldflags=list(spec.ldflags),
            extra_include_paths=[str(d) for d in spec.include_dirs],
            build_directory=str(folder),
            with_cuda=spec.cuda,
            verbose=verbose,
        )


def load(spec: JitSpec, verbose: bool = False) -> ModuleType:
    """Build (first call, a minute or two) or load the extension; cached for the process.

    Args:
        spec: what to build.
        verbose: print the compiler commands.
    Raises:
        spec.unavailable (an ExtensionUnavailable): no compiler / ninja (/ nvcc / CUDA for a CUDA build), or
            the build failed.
    """
    cached = _CACHE.get(spec.name)
    if isinstance(cached, ExtensionUnavailable):
        raise cached
    if cached is not None:
        return cached
    reason = missing_toolchain(spec.cuda)
    if reason is None:
        try:
            _CACHE[spec.name] = _build(spec, verbose)
            return _CACHE[spec.name]
        except (RuntimeError, OSError, ImportError, subprocess.SubprocessError) as e:  # build or load failure
            reason = (f"building {spec.name} failed (build dir from $RECON_EXT_DIR or "
                      f"~/.cache/recon/torch_extensions):\n{str(e)[-_ERROR_TAIL:]}")
    err = spec.unavailable(f"{spec.label} unavailable: {reason}")
    _CACHE[spec.name] = err
    raise err
