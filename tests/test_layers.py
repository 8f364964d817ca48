"""The import contract: every import points down the layers of docs/ARCHITECTURE.md, and no import
cycle exists. Every module of ``recon/``, ``tools/`` and ``pipelines/`` is parsed with ``ast``; all
its imports count, those inside functions and ``if TYPE_CHECKING:`` blocks included (a function-level
import must not hide a back edge).

    core       recon (package), io, errors, choices, names, progress, signals, runtime, distributed, cameras, mesh
    ops        recon.ops.*            plain-tensor functions + kernels, the JIT loader
    render     recon.render.*         renderer interface, registry, backends
    models     recon.models.*, losses, metrics, colour
    data       recon.data.*           datasets, converters (ground truth from ops, never metrics)
    train      config, training, evaluate, runs, checkpoint, published   (records, no figures)
    report     recon.report.*         the only writer of figures, meshes and pages
    workflows  recon.workflows.*      one call per command: train -> evaluate -> report
    app        recon.app.*            the local web app (Gradio; only pipelines.app imports it)
    tools      tools.*                benchmarks, GPU check (beside the package, not in the wheel)
    pipelines  pipelines.*            argv -> config -> one call -> print

A module may import its own layer or any lower one; within a layer the graph must be acyclic.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("recon", "tools", "pipelines")

LAYERS = ("core", "ops", "render", "models", "data", "train", "report", "workflows", "app", "tools", "pipelines")
# module or package prefix -> layer; the longest matching prefix wins ("recon" names only the package
# itself, so a new top-level module must be given a layer here).
ASSIGN = {
    "recon": "core", "recon.io": "core", "recon.errors": "core", "recon.choices": "core", "recon.signals": "core",
    "recon.runtime": "core", "recon.distributed": "core", "recon.cameras": "core", "recon.mesh": "core",
    "recon.names": "core", "recon.progress": "core",
    "recon.ops": "ops",
    "recon.render": "render",
    "recon.models": "models", "recon.losses": "models", "recon.metrics": "models", "recon.colour": "models",
    "recon.data": "data",
    "recon.config": "train", "recon.training": "train", "recon.evaluate": "train", "recon.runs": "train",
    "recon.checkpoint": "train", "recon.published": "train", "recon.budget": "train", "recon.retrieval": "train",
    "recon.ranges": "train", "recon.framing": "train",
    "recon.report": "report",
    "recon.workflows": "workflows",
    "recon.app": "app",
    "tools": "tools",
    "pipelines": "pipelines",
}


def discover(root: Path = ROOT) -> dict[str, tuple[Path, bool]]:
    """``{module name: (file, is_package)}`` of every ``.py`` file under ``PACKAGES``."""
    mods: dict[str, tuple[Path, bool]] = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            is_pkg = parts[-1] == "__init__"
            mods[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return mods


def _owner(name: str, mods: dict[str, tuple[Path, bool]]) -> str | None:
    """The project module ``name`` refers to (``recon.render.base.Renderer`` -> ``recon.render.base``)."""
    while name and name not in mods:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(module: str, source: str, is_pkg: bool, mods: dict[str, tuple[Path, bool]]) -> dict[str, int]:
    """``{imported project module: line}`` of every import statement anywhere in ``source``."""
    found: dict[str, int] = {}
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module if is_pkg else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            # "from recon.ops import jit" imports the module recon.ops.jit
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target for a in node.names]
        for name in names:
            owner = _owner(name, mods)
            if owner is not None and owner != module:
                found.setdefault(owner, node.lineno)
    return found


def layer_of(module: str) -> str:
    """The layer ``module`` belongs to (longest prefix of ``ASSIGN``); a KeyError names an unassigned one."""
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        prefix = ".".join(parts[:k])
        if prefix in ASSIGN and (prefix != "recon" or module == "recon"):
            return ASSIGN[prefix]
    raise KeyError(f"{module} has no layer: add it to ASSIGN in tests/test_layers.py (and docs/ARCHITECTURE.md)")


def graph(root: Path = ROOT) -> dict[str, dict[str, int]]:
    mods = discover(root)
    return {m: imports_of(m, path.read_text(encoding="utf-8"), is_pkg, mods) for m, (path, is_pkg) in mods.items()}


def back_edges(g: dict[str, dict[str, int]]) -> list[str]:
    """Imports from a lower layer to a higher one, as ``file:line: a (layer) imports b (layer)``."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    out = []
    for mod, deps in sorted(g.items()):
        for dep, line in sorted(deps.items()):
            if rank[layer_of(dep)] > rank[layer_of(mod)]:
                out.append(f"{mod}:{line}: {mod} ({layer_of(mod)}) imports {dep} ({layer_of(dep)})")
    return out


def cycles(g: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in g.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer():
    for mod in discover():
        layer_of(mod)


def test_imports_point_down_the_layers():
    bad = back_edges(graph())
    assert not bad, "imports against the layer order (docs/ARCHITECTURE.md):\n" + "\n".join(bad)


def test_no_import_cycle():
    found = cycles(graph())
    assert not found, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in found)


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir(exist_ok=True)
        (tmp_path / pkg / "__init__.py").touch()
    return tmp_path


def test_the_check_catches_a_back_edge_hidden_in_a_function(tmp_path):
    root = _tree(tmp_path, {
        "recon/ops/__init__.py": "",
        "recon/ops/kernel.py": "def bench():\n    from recon.training import Trainer\n",
        "recon/training.py": "from recon.ops import kernel\n",
    })
    g = graph(root)
    assert back_edges(g) == ["recon.ops.kernel:2: recon.ops.kernel (ops) imports recon.training (train)"]
    assert cycles(g) == [["recon.ops.kernel", "recon.training"]]


@pytest.mark.parametrize("stmt", ["from . import b", "import recon.data.b", "from recon.data.b import X",
                                  "from recon.data import b"])
def test_the_check_sees_every_import_form(tmp_path, stmt):
    root = _tree(tmp_path, {"recon/data/__init__.py": "", "recon/data/a.py": stmt + "\n",
                            "recon/data/b.py": "from recon.data import a\n"})
    assert cycles(graph(root)) == [["recon.data.a", "recon.data.b"]]
