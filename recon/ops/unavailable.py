"""``BackendUnavailable``: a kernel or backend cannot run on this machine.

Defined here, at the bottom of the layers, because the JIT loader (:mod:`recon.ops.jit`) raises it
for every compiled op (renderers and voxelizer alike); :mod:`recon.render` re-exports it.
"""

from __future__ import annotations

__all__ = ["BackendUnavailable"]


class BackendUnavailable(RuntimeError):
    """A rendering backend cannot run here; the message says what is missing and how to install it."""
