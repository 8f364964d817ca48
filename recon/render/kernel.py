"""``KernelRenderer``: the renderer base with an ``impl`` option ("auto", "torch", "cpp", "cuda").

The choice itself (which implementation runs tensors on which device, the fallback to the torch
reference) is the op family's :class:`recon.ops.impl.ImplChoice`; a renderer holds the one of the
ops it renders with.
"""

from __future__ import annotations

import torch

from recon.errors import ConfigError
from recon.ops.impl import CHOICES, ImplChoice
from recon.render.base import RasterSettings, Renderer

__all__ = ["KernelRenderer"]


class KernelRenderer(Renderer):
    """A renderer whose ``impl`` ("auto", "torch", "cpp" or "cuda") picks among the implementations
    of ``choice`` (silhouettes) and ``rgba_choice`` (colour renders), both set by the subclass.

    Attributes:
        requested_impl: what was asked for.
        impl: the silhouette implementation used by the last call (before any call: the one ``auto``
            picks for the ``device`` given at construction).
        rgba_impl: the same for colour renders (resolved on first use: it may build another kernel).
    Raises (constructor):
        ConfigError: unknown ``impl``; ValueError: a kernel asked for another device than ``device``.
        BackendUnavailable: a forced kernel ("cpp", "cuda") cannot be built or run here.
    """

    choice: ImplChoice
    rgba_choice: ImplChoice

    def __init__(self, settings: RasterSettings | None = None, impl: str = "auto",
                 device: torch.device | str | None = None):
        super().__init__(settings)
        if impl not in CHOICES:  # named after the backend: the dibr renderer uses the rgba ops' choice
            raise ConfigError(f"unknown {self.name} impl {impl!r}; valid impls: {', '.join(CHOICES)}")
        self.choice.check_requested(impl)
        self.requested_impl = impl
        default = "cuda" if impl == "cuda" else "cpu"
        self._device = torch.device(device if device is not None else default)
        self.impl = self.resolve(self._device)
        self._rgba_impl: str | None = None

    def resolve(self, device: torch.device) -> str:
        """The silhouette implementation for tensors on ``device`` (remembered as ``impl``)."""
        self.impl = self.choice.resolve(self.requested_impl, device)
        return self.impl

    def resolve_rgba(self, device: torch.device) -> str:
        """The colour-render implementation for tensors on ``device`` (remembered as ``rgba_impl``)."""
        self._rgba_impl = self.rgba_choice.resolve(self.requested_impl, device)
        return self._rgba_impl

    @property
    def rgba_impl(self) -> str:
        """The colour-render implementation of the last call (before any: for the construction device)."""
        return self._rgba_impl if self._rgba_impl is not None else self.resolve_rgba(self._device)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(impl={self.impl!r}, requested={self.requested_impl!r}, {self.settings})"
