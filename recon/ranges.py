"""The valid range of every numeric flag, checked up front (before any file is read) so that no value
can make a command allocate without bound, loop for ever or overflow: one table per config
(``RANGES[ConfigClass.__name__]``), listed in docs/operations.md.

The configs keep their own, more specific messages for the common mistakes (``--iterations 0``,
``--lr nan``); ``check_ranges`` runs after them and adds the upper bounds: a value outside its
range raises one ``recon.errors.ConfigError`` (a ``ValueError``) naming the flag, the value and the range.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields, is_dataclass
from typing import Any

from recon.errors import ConfigError

__all__ = ["Range", "MAX_STEPS", "MAX_OBJECTS", "MIN_DEMO_MINUTES", "MAX_DEMO_MINUTES", "RANGES", "thread_cap",
           "check_range", "check_ranges"]

MAX_STEPS = 2 ** 31 - 1  # training steps: an int32 step counter, ~68 years at 1 step/s; more is a typo
MAX_OBJECTS = 10 ** 6  # objects per category and split (recon.config.MAX_COUNT)
MIN_DEMO_MINUTES = 1.0  # the demo's calibration alone takes ~20 s on a CPU; below this it trains a token 40 steps
MAX_DEMO_MINUTES = 7 * 24 * 60.0  # a week


def thread_cap() -> int:
    """The most worker processes / threads a flag may ask for: 4 per core, at least 64."""
    return max(64, 4 * (os.cpu_count() or 1))


@dataclass(frozen=True)
class Range:
    """``lo <= x <= hi`` (``<`` on an open side); ``integer``: whole numbers only. ``hi`` may be the
    string ``"threads"`` for ``thread_cap()``."""

    lo: float
    hi: float | str
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = True
    why: str = ""  # said with a refusal

    def upper(self) -> float:
        return float(thread_cap()) if self.hi == "threads" else float(self.hi)

    def text(self) -> str:
        def num(x: float) -> str:
            if self.integer or float(x).is_integer() and abs(x) >= 1:
                return f"{int(x):,}" if abs(x) < 2 ** 62 else f"2^{round(math.log2(x + 1))} - 1"
            return f"{x:g}"
        hi = num(self.upper()) + (" (4 per CPU core, at least 64)" if self.hi == "threads" else "")
        return f"{'(' if self.lo_open else '['}{num(self.lo)}, {hi}{')' if self.hi_open else ']'}"

    def contains(self, value: float) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not float(value).is_integer():
            return False
        lo, hi = self.lo, self.upper()
        above = value > lo if self.lo_open else value >= lo
        below = value < hi if self.hi_open else value <= hi
        return bool(above and below)  # NaN fails both


_POS = dict(lo_open=True, integer=False)
RANGES: dict[str, dict[str, Range]] = {
    "TrainConfig": {
        "iterations": Range(1, MAX_STEPS, why="~68 years at one step a second; more is a typo"), "batch_size": Range(1, 1 << 16),
        "lr": Range(0, 1, **_POS), "sigma": Range(0, 1, **_POS),
        "eps": Range(0, 0.5, lo_open=True, hi_open=True, integer=False),
        "lambda_lap": Range(0, 1e6, integer=False), "lambda_flat": Range(0, 1e6, integer=False),
        "lambda_colour": Range(0, 1e6, integer=False),
        "decay_at": Range(0, 1, integer=False), "decay": Range(0, 1, **_POS), "decay_step": Range(0, MAX_STEPS),
        "seed": Range(0, 2 ** 63 - 1), "val_every": Range(1, MAX_STEPS), "val_objects": Range(0, MAX_OBJECTS),
        "log_every": Range(1, MAX_STEPS), "keep": Range(1, 1000), "workers": Range(0, "threads"),
        "max_bad_steps": Range(1, MAX_STEPS), "threads": Range(0, "threads"),
    },
    "EvalConfig": {"max_per_category": Range(0, MAX_OBJECTS), "figures": Range(0, 1000)},  # 0 = all (choices.ALL)
    "CompareConfig": {"max_per_category": Range(0, MAX_OBJECTS), "figures": Range(0, 1000)},
    # the demo's own flags; its training's (DemoConfig.train) are checked as a TrainConfig's
    "DemoConfig": {
        "per_category": Range(1, MAX_OBJECTS), "budget_minutes": Range(
            MIN_DEMO_MINUTES, MAX_DEMO_MINUTES, integer=False,
            why="the calibration alone takes ~20 s; a smaller budget would train a token 40 steps"),
    },
}


def check_range(flag: str, value: Any, valid: Range) -> None:
    """One-line ``ConfigError`` naming ``flag`` unless ``value`` lies in ``valid``."""
    if not valid.contains(value):
        kind = "an integer" if valid.integer else "a number"
        raise ConfigError(f"{flag} {value}: expected {kind} in {valid.text()}" + (f" ({valid.why})" if valid.why else ""))


def check_ranges(cfg: Any, skip: tuple[str, ...] = ()) -> None:
    """Check every numeric field of a config dataclass against ``RANGES[type(cfg).__name__]``
    (``None`` = the flag's default, not checked; ``skip``: fields that do not apply). Raises
    ConfigError naming the flag."""
    assert is_dataclass(cfg)
    table = RANGES[type(cfg).__name__]
    for f in fields(cfg):
        if f.name in table and f.name not in skip and getattr(cfg, f.name) is not None:
            check_range("--" + f.name.replace("_", "-"), getattr(cfg, f.name), table[f.name])
