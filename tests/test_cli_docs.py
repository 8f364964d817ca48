"""docs/cli.md is what the commands' --help says (tools/cli_docs.py generates it)."""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from tools import cli_docs

REGENERATE = "python -m tools.cli_docs"


@pytest.fixture(scope="module")
def generated() -> str:
    return cli_docs.generate()  # runs every --help once, in subprocesses


def test_cli_md_matches_every_help(generated: str) -> None:
    current = cli_docs.OUT.read_text(encoding="utf-8") if cli_docs.OUT.is_file() else ""
    if current != generated:
        diff = "".join(list(difflib.unified_diff(current.splitlines(True), generated.splitlines(True),
                                                 "docs/cli.md (committed)", "--help (now)"))[:60])
        pytest.fail(f"docs/cli.md is out of date with the commands' --help; regenerate it with "
                    f"`{REGENERATE}` and commit it.\n{diff}", pytrace=False)


def test_every_command_and_subcommand_has_a_section(generated: str) -> None:
    names = cli_docs.commands()
    assert {"convert", "train", "eval", "predict", "compare", "demo", "bench", "gpucheck"} <= set(names)
    assert "cli" not in names  # helpers are not commands
    for name in names:
        assert f"\n## {name}\n" in generated
        assert f"usage: python -m pipelines.{name}" in generated
    for sub in ("synthetic", "meshes", "nmr", "validate"):
        assert f"\n### convert {sub}\n" in generated


def test_subcommands_are_read_from_the_help() -> None:
    text = "positional arguments:\n  {synthetic,meshes}\n    synthetic  x\n\noptions:\n  -h, --help  y\n"
    assert cli_docs.subcommands(text) == ["synthetic", "meshes"]
    assert cli_docs.subcommands("options:\n  --split {train,val,test}\n") == []


def test_check_exits_1_on_a_stale_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, generated: str) -> None:
    monkeypatch.setattr(cli_docs, "generate", lambda: generated)
    out = tmp_path / "cli.md"
    assert cli_docs.main(["--check", "--out", str(out)]) == 1  # missing
    assert cli_docs.main(["--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == generated
    assert cli_docs.main(["--check", "--out", str(out)]) == 0
    out.write_text(generated.replace("--out", "--output", 1), encoding="utf-8")
    assert cli_docs.main(["--check", "--out", str(out)]) == 1
