"""docs/cli.md from every command's ``--help``: the command-line reference is generated, never
written by hand, so it cannot drift from the flags.

    python -m tools.cli_docs            # (re)write docs/cli.md
    python -m tools.cli_docs --check    # exit 1 when docs/cli.md differs from what --help says

A command is a module of ``pipelines/`` that runs as ``python -m pipelines.NAME`` (it has an
``if __name__ == "__main__":`` block); a command whose ``--help`` lists sub-commands
(``{a,b,...}``, e.g. ``convert``) gets one section per sub-command too. Each ``--help`` runs in its
own subprocess with ``COLUMNS=100`` (argparse wraps to the terminal width) and colours off, so the
text does not depend on the terminal the generator runs in. ``tests/test_cli_docs.py`` fails when
the committed file differs.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from recon.io import atomic_write_bytes

__all__ = ["ROOT", "OUT", "ORDER", "COLUMNS", "commands", "subcommands", "help_text", "generate", "main"]

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "cli.md"
# the README's order; a command not listed here follows, alphabetically
ORDER = ("convert", "train", "eval", "predict", "compare", "demo", "bench", "gpucheck", "app")
COLUMNS = 100
_MAIN_BLOCK = re.compile(r"^if __name__ == [\"']__main__[\"']\s*:", re.M)
_CHOICES_LINE = re.compile(r"^  \{([\w,-]+)\}\s*$", re.M)  # argparse's sub-command line under "positional arguments"
_HEADER = """# Command-line reference

Generated from each command's `--help` by `python -m tools.cli_docs` (at {columns} columns); do not
edit by hand: after changing a flag, run `python -m tools.cli_docs` and commit this file
(`tests/test_cli_docs.py` fails while it is out of date). Every command also answers `--help`
itself.

"""


def commands(root: Path = ROOT) -> list[str]:
    """Names ``X`` of the modules ``pipelines/X.py`` that run as commands, in ``ORDER``, then the rest sorted."""
    names = [p.stem for p in (root / "pipelines").glob("*.py")
             if not p.stem.startswith("_") and _MAIN_BLOCK.search(p.read_text(encoding="utf-8"))]
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(ORDER)), n))


def subcommands(help_out: str) -> list[str]:
    """The sub-command names of a ``--help`` text (``{a,b,...}`` alone on a line), or []."""
    m = _CHOICES_LINE.search(help_out)
    return m.group(1).split(",") if m else []


def help_text(argv: list[str], root: Path = ROOT) -> str:
    """The stdout of ``python -m pipelines.<argv> --help`` run from ``root`` at ``COLUMNS`` columns.

    Raises RuntimeError (with the command's stderr) when it exits non-zero: a command whose help
    fails is a bug to fix, not a page to write."""
    env = {**os.environ, "COLUMNS": str(COLUMNS), "NO_COLOR": "1", "PYTHON_COLORS": "0", "TERM": "dumb",
           "PYTHONPATH": os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])])}
    cmd = [sys.executable, "-m", f"pipelines.{argv[0]}", *argv[1:], "--help"]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[1:])} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def _section(level: str, argv: list[str], text: str) -> str:
    body = "\n".join(line.rstrip() for line in text.strip("\n").splitlines())
    return f"{level} {' '.join(argv)}\n\n```text\n{body}\n```\n"


def generate(root: Path = ROOT, workers: int | None = None) -> str:
    """The whole of docs/cli.md: one ``##`` section per command (``###`` per sub-command)."""
    names = commands(root)
    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:  # each help is its own process; torch imports dominate
        tops = list(pool.map(lambda n: help_text([n], root), names))
        subs = {n: subcommands(t) for n, t in zip(names, tops)}
        jobs = [(n, s) for n in names for s in subs[n]]
        sub_texts = dict(zip(jobs, pool.map(lambda job: help_text(list(job), root), jobs)))
    parts = [_HEADER.format(columns=COLUMNS),
             "Commands: " + ", ".join(f"[{n}](#{n})" for n in names) + ".\n\n"]
    for name, text in zip(names, tops):
        parts.append(_section("##", [name], text))
        for sub in subs[name]:
            parts.append("\n" + _section("###", [name, sub], sub_texts[(name, sub)]))
        parts.append("\n")
    return "".join(parts).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.cli_docs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="write nothing; exit 1 when the file differs")
    p.add_argument("--out", default=str(OUT), help="the file (default: docs/cli.md)")
    args = p.parse_args(argv)
    text, out = generate(), Path(args.out)
    if args.check:
        current = out.read_text(encoding="utf-8") if out.is_file() else None
        if current != text:
            print(f"{out} is out of date with the commands' --help: run `python -m tools.cli_docs`", file=sys.stderr)
            return 1
        print(f"{out} is up to date")
        return 0
    atomic_write_bytes(out, text.encode("utf-8"))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
