"""The choice among a render's implementations, shared by the renders that have kernels.

    torch  the pure-PyTorch reference, any device, always available
    cpp    the fused C++/OpenMP kernel, CPU tensors, needs a C++ compiler
    cuda   the fused CUDA kernel, CUDA tensors, needs nvcc and a GPU
    auto   per call from the input's device: the kernel of that device, or the torch reference when
           the kernel cannot be built (logged once per reason)

:class:`ImplChoice` holds that rule for one family of kernels (one extension loader): one object per
extension, declared next to its ops (:mod:`recon.ops.silhouette`, :mod:`recon.ops.rgba`);
:class:`recon.render.kernel.KernelRenderer` is the renderer base with an ``impl`` option built on it.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Callable

import torch

from recon.errors import ConfigError
from recon.ops.unavailable import BackendUnavailable

__all__ = ["IMPLS", "CHOICES", "KERNEL_DEVICE", "ImplChoice"]

IMPLS = ("torch", "cpp", "cuda")
CHOICES = ("auto",) + IMPLS
KERNEL_DEVICE = {"cpp": "cpu", "cuda": "cuda"}  # kernel -> the device type of the tensors it takes

_log = logging.getLogger(__name__)


class ImplChoice:
    """The implementations of one family of kernels.

    Args:
        label: what messages call it ("softras", "rgba", "dibr").
        load_extension: kernel kind ("cpp" / "cuda") -> the compiled module; raises
            ``BackendUnavailable`` when it cannot be built here.
    """

    def __init__(self, label: str, load_extension: Callable[[str], ModuleType]):
        self.label = label
        self._load_extension = load_extension
        self._warned: set[str] = set()  # fallback reasons already logged in this process

    def unavailable_reason(self, impl: str, device: torch.device) -> str | None:
        """None when ``impl`` can run tensors on ``device``, else why not (builds the kernel on first use)."""
        if impl == "torch":
            return None
        if device.type != KERNEL_DEVICE[impl]:
            return f"the {impl} {self.label} kernel runs on {KERNEL_DEVICE[impl]} tensors, not {device.type}"
        try:
            self._load_extension(impl)
        except BackendUnavailable as e:
            return str(e)
        return None

    def available(self, device: torch.device | str = "cpu") -> dict[str, str | None]:
        """``{impl: None}`` for each implementation that can run on ``device``, else the reason.

        Builds the kernels on first use (can take a minute), then answers from the process cache.
        """
        dev = torch.device(device)
        return {impl: self.unavailable_reason(impl, dev) for impl in IMPLS}

    def check_requested(self, impl: str) -> None:
        """For a constructor: fail now, with the build error, rather than at the first call.

        Raises:
            ValueError: unknown ``impl`` (lists the valid ones).
            BackendUnavailable: a forced kernel ("cpp", "cuda") cannot be built or run here.
        """
        if impl not in CHOICES:
            raise ConfigError(f"unknown {self.label} impl {impl!r}; valid impls: {', '.join(CHOICES)}")
        if impl == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable(f"{self.label} impl 'cuda' needs a CUDA device, but torch.cuda.is_available() "
                                     "is False (use impl='cpp', 'torch' or 'auto')")
        if impl in KERNEL_DEVICE:
            self._load_extension(impl)

    def resolve(self, requested: str, device: torch.device) -> str:
        """The implementation that runs tensors on ``device`` for ``requested`` ("auto" or an impl).

        Raises:
            ValueError: unknown impl, or a kernel asked for tensors of another device.
        """
        if requested not in CHOICES:
            raise ConfigError(f"unknown {self.label} impl {requested!r}; valid impls: {', '.join(CHOICES)}")
        if requested != "auto":
            if requested in KERNEL_DEVICE and device.type != KERNEL_DEVICE[requested]:
                raise ConfigError(f"{self.label} impl {requested!r} runs on {KERNEL_DEVICE[requested]} tensors, got "
                                 f"{device.type} tensors (use impl='auto' to follow the input)")
            return requested
        kernel = "cuda" if device.type == "cuda" else "cpp"
        reason = self.unavailable_reason(kernel, device)
        if reason is None:
            return kernel
        if reason not in self._warned:
            self._warned.add(reason)
            _log.warning("%s: using the (slower) torch reference on %s: %s", self.label, device.type, reason)
        return "torch"
