"""JIT build of the SoftRas voxelization kernel (``csrc/voxelize/softras_voxel.cpp``, CPU only).

Built on first use by :mod:`recon.ops.jit` (the loader of the renderer's kernels) into
``$RECON_EXT_DIR/recon_softras_voxel/<key>`` (default ``~/.cache/recon/torch_extensions/...``). A
missing compiler or a failed build raises :class:`VoxelizerUnavailable` (an
:class:`~recon.errors.ExtensionUnavailable`, not the renderer's error) with the reason, remembered for
the process.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from recon.errors import ExtensionUnavailable
from recon.ops import jit

__all__ = ["VoxelizerUnavailable", "EXTENSION_NAME", "load_voxel_extension"]


class VoxelizerUnavailable(ExtensionUnavailable):
    """The voxelization kernel cannot be built or loaded here; the message says why."""


EXTENSION_NAME = "recon_softras_voxel"
# jit.CPU_FLAGS: -ffp-contract=off and no -ffast-math, so the column test rounds exactly like the reference.
_SPEC = jit.JitSpec(EXTENSION_NAME, "softras voxelization kernel",
                    (Path(__file__).resolve().parent / "csrc" / "voxelize" / "softras_voxel.cpp",),
                    unavailable=VoxelizerUnavailable)


def load_voxel_extension(verbose: bool = False) -> ModuleType:
    """Build (first call, about a minute) or load the kernel.

    Returns:
        The extension module with ``voxelize(coords, faces, resolution)``.
    Raises:
        VoxelizerUnavailable: no compiler / ninja, or the build failed.
    """
    return jit.load(_SPEC, verbose)
