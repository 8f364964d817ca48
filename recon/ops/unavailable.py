"""``BackendUnavailable``: a kernel or backend cannot run on this machine.

Defined here, at the bottom of the layers, because the JIT loader (:mod:`recon.ops.jit`) raises it
for the renderers' compiled ops; :mod:`recon.render` re-exports it. It is the renderers' kind of
:class:`recon.errors.ExtensionUnavailable` (a user error: the CLI prints one line, exit 2); the
voxelizer's kernel raises its own ``recon.ops.voxelize_softras_ext.VoxelizerUnavailable``.
"""

from __future__ import annotations

from recon.errors import ExtensionUnavailable

__all__ = ["BackendUnavailable"]


class BackendUnavailable(ExtensionUnavailable):
    """A rendering backend cannot run here; the message says what is missing and how to install it."""
