"""The README, the CHANGELOG and docs/ point at things that exist: every relative link resolves (its
#anchor to a heading of the target page), and every repository path they name in backticks
(`recon/ops/jit.py`, `tests/test_x.py`, `tools/gpucheck/`) is in the tree (the CHANGELOG may name
old paths)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
CURRENT = [p for p in PAGES if p.name != "CHANGELOG.md"]  # pages that describe the tree as it is (the changelog names old paths)
_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_REPO_PATH = re.compile(r"(?:recon|tools|tests|pipelines|scripts|assets|docs)/[\w.-]+(?:/[\w.-]+)*/?")


def _prose(text: str) -> str:
    """``text`` without fenced code blocks (links inside code are examples, not links)."""
    return _FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (``-`` and ``_`` kept), spaces -> ``-``."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for h in _HEADING.findall(_prose(page.read_text(encoding="utf-8"))):
        s = slug(h)
        n = seen.get(s, 0)
        out.add(s if n == 0 else f"{s}-{n}")
        seen[s] = n + 1
    return out


def broken_links(page: Path, root: Path = ROOT) -> list[str]:
    """``"target: why"`` for each relative link of ``page`` that does not resolve."""
    bad = []
    prose = _CODE.sub("", _prose(page.read_text(encoding="utf-8")))
    for target in _LINK.findall(prose):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: {dest.relative_to(root) if dest.is_relative_to(root) else dest} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading with anchor #{anchor} in {dest.relative_to(root)}")
    return bad


def missing_paths(page: Path, root: Path = ROOT) -> list[str]:
    """Repository paths named in backticks on ``page`` (the whole span is a path) that do not exist."""
    text = _prose(page.read_text(encoding="utf-8"))
    names = {m.group(0)[1:-1] for m in _CODE.finditer(text)}
    return sorted(n for n in names if _REPO_PATH.fullmatch(n) and not (root / n).exists())


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    assert page.is_file(), f"{page.relative_to(ROOT)} is missing"
    bad = broken_links(page)
    assert not bad, f"{page.relative_to(ROOT)}: broken links:\n  " + "\n  ".join(bad)


@pytest.mark.parametrize("page", CURRENT, ids=lambda p: str(p.relative_to(ROOT)))
def test_named_repository_paths_exist(page: Path) -> None:
    missing = missing_paths(page)
    assert not missing, (f"{page.relative_to(ROOT)} names paths that are not in the tree (moved or renamed? "
                         f"update the page):\n  " + "\n  ".join(missing))


def test_the_checks_can_fail(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# Title\n\n## The GPU check: `make gpu-check`\n", encoding="utf-8")
    page = tmp_path / "a.md"
    page.write_text("[ok](docs/b.md#the-gpu-check-make-gpu-check) [top](docs/b.md#title) "
                    "[gone](docs/c.md) [bad anchor](docs/b.md#nope) [web](https://example.org/x)\n"
                    "```\n[in code](nowhere.md)\n```\n`docs/b.md` `recon/nope.py` `RUN/x.json`\n", encoding="utf-8")
    assert broken_links(page, tmp_path) == [
        "docs/c.md: docs/c.md does not exist", "docs/b.md#nope: no heading with anchor #nope in docs/b.md"]
    assert missing_paths(page, tmp_path) == ["recon/nope.py"]
