"""JIT build of the SoftRas voxelization kernel (``csrc/voxelize/softras_voxel.cpp``, CPU only).

Built on first use by :mod:`recon.ops.jit` (the loader of the renderer's kernels) into
``$RECON_EXT_DIR/recon_softras_voxel/<key>`` (default ``~/.cache/recon/torch_extensions/...``). A
missing compiler or a failed build raises :class:`~recon.render.base.BackendUnavailable` with the
reason, remembered for the process.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from recon.ops import jit
from recon.ops.unavailable import BackendUnavailable

__all__ = ["BackendUnavailable", "EXTENSION_NAME", "load_voxel_extension"]

EXTENSION_NAME = "recon_softras_voxel"
# jit.CPU_FLAGS: -ffp-contract=off and no -ffast-math, so the column test rounds exactly like the reference.
_SPEC = jit.JitSpec(EXTENSION_NAME, "softras voxelization kernel",
                    (Path(__file__).resolve().parent / "csrc" / "voxelize" / "softras_voxel.cpp",))


def load_voxel_extension(verbose: bool = False) -> ModuleType:
    """Build (first call, about a minute) or load the kernel.

    Returns:
        The extension module with ``voxelize(coords, faces, resolution)``.
    Raises:
        BackendUnavailable: no compiler / ninja, or the build failed.
    """
    return jit.load(_SPEC, verbose)
