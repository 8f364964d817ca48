"""One number formatter for every table (console, Markdown, HTML) and strict-JSON cleaning."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["fmt", "finite", "KINDS"]

# value kind -> format; every table cell of the project goes through ``fmt``
KINDS = {"loss": "{:.4f}", "iou": "{:.4f}", "chamfer": "{:.4f}", "fscore": "{:.4f}", "psnr": "{:.2f}",
         "parameters": "{:,}", "seconds": "{:.1f}", "steps": "{:d}", "count": "{:d}"}
_INTEGER = {"parameters", "steps", "count"}


def fmt(value: Any, kind: str) -> str:
    """Format a table value of ``kind`` (a key of ``KINDS``); None / NaN / inf -> ``"-"``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return KINDS[kind].format(int(value) if kind in _INTEGER else float(value))


def finite(obj: Any) -> Any:
    """NaN / inf -> None everywhere in nested dicts/lists (strict JSON: metrics not computed are null)."""
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
