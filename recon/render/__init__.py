"""Rendering backends behind one interface and one registry.

    get_renderer("softras", impl="auto"|"torch"|"cpp"|"cuda", sigma=1e-4, ...)
    get_renderer("kaolin")        # Kaolin DIB-R, CUDA only
    get_renderer("nvdiffrast")    # nvdiffrast + antialias, CUDA only
    get_renderer("dibr", impl=...)  # our DIB-R-style render, CPU and CUDA
    available_backends()          # {name: None if usable else "why not"}

Every renderer offers ``silhouettes(verts, faces, azimuths) -> (B, S, S)``; ``softras`` (soft
z-buffer) and ``dibr`` also ``rgba(verts, faces, azimuths, colours (B, V, 3)) -> (B, 4, S, S)``.

Backends are imported lazily: asking for one that cannot run raises ``BackendUnavailable``
naming what is missing and how to install it.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Callable

from recon.choices import RGBA_BACKENDS
from recon.errors import ConfigError
from recon.render.base import BackendUnavailable, RasterSettings, Renderer

__all__ = ["BackendUnavailable", "RasterSettings", "Renderer", "BACKENDS", "RGBA_BACKENDS", "get_renderer",
           "available_backends"]

# name -> "module:factory"; the factory takes (settings: RasterSettings, **backend_opts).
BACKENDS: dict[str, str] = {
    "softras": "recon.render.softras:make_renderer",
    "kaolin": "recon.render.kaolin_dibr:make_renderer",
    "nvdiffrast": "recon.render.nvdiffrast_backend:make_renderer",
    "dibr": "recon.render.dibr:make_renderer",
}

# RGBA_BACKENDS (recon.choices): the backends whose renderer has ``rgba`` (a colour render)

_SETTING_FIELDS = set(RasterSettings.__dataclass_fields__)
# options every caller may pass to get_renderer whatever the backend: name -> the value that means "no choice"
COMMON_OPTIONS: dict[str, object] = {"impl": "auto"}


def _factory(name: str) -> Callable[..., Renderer]:
    if name not in BACKENDS:
        raise ConfigError(f"unknown rendering backend {name!r}; valid backends: {', '.join(sorted(BACKENDS))}")
    module, attr = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def get_renderer(name: str = "softras", **opts) -> Renderer:
    """Build a renderer. Options that are ``RasterSettings`` fields (``image_size``, ``sigma``,
    ``eps``, ``elevation``, ``distance``, ``viewing_angle``) go to the settings, the rest to the
    backend (e.g. ``impl`` and ``device`` for softras). ``impl`` may be passed for every backend:
    one without implementations ignores ``impl="auto"`` and refuses any other value.

    Raises:
        ValueError: unknown backend name (lists the valid ones).
        BackendUnavailable: the backend cannot run here (says what is missing).
    """
    factory = _factory(name)
    settings = RasterSettings(**{k: v for k, v in opts.items() if k in _SETTING_FIELDS})
    backend_opts = {k: v for k, v in opts.items() if k not in _SETTING_FIELDS}
    # common options a backend does not have are dropped at their default, so callers never branch on
    # the backend name; set to anything else they are an error naming the backend
    accepted = inspect.signature(factory).parameters
    for key, default in COMMON_OPTIONS.items():
        if key in backend_opts and key not in accepted:
            value = backend_opts.pop(key)
            if value not in (default, None):
                raise ConfigError(f"--{key} {value!r} applies only to backends that have it; "
                                 f"the {name} backend has no {key} option (leave it at {default!r})")
    return factory(settings, **backend_opts)


def available_backends(device: str = "cpu") -> dict[str, str | None]:
    """``{backend: None}`` when it can build a renderer on ``device``, else the reason it cannot."""
    out: dict[str, str | None] = {}
    for name in BACKENDS:
        try:
            get_renderer(name, device=device)
            out[name] = None
        except BackendUnavailable as e:
            out[name] = str(e)
    return out
