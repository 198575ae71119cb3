"""The shape of the package: no module reaches into another's private names, the import graph of
``cammimic/`` has no cycle (function-level imports included), and the modules a run goes through
import without the heavy libraries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cammimic"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    """``(module imported, names taken from it, line)`` for every cammimic import in ``path``, at
    any depth (top level, functions, ``if TYPE_CHECKING``), resolved to a module of the package."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "cammimic"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != "cammimic":
                continue
            names = [a.name for a in node.names]
            # `from cammimic import io` imports the module cammimic.io
            submodules = [f"{source}.{n}" for n in names if f"{source}.{n}" in MODULES]
            if submodules:
                found += [(m, [], node.lineno) for m in submodules]
                names = [n for n in names if f"{source}.{n}" not in MODULES]
            if names:
                found.append((source, names, node.lineno))
    return [(m, n, line) for m, n, line in found if m in MODULES]


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        deps = {m for m, _, _ in _imports(name, path)}
        # a package's submodule imports its package's __init__ first; the reverse edge is the
        # package re-exporting its submodules, which is what a package is for
        graph[name] = {d for d in deps if d != name and not name.startswith(d + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_package_is_found():
    assert {"cammimic.api", "cammimic.io", "cammimic.io.video", "cammimic.methods.cammimic", "cammimic.rundir"} \
        <= set(MODULES)
    graph = _graph()
    # function-level imports count: run_cammimic imports cammimic.training inside the function
    assert "cammimic.training" in graph["cammimic.methods.cammimic"]
    assert "cammimic.io.files" in graph["cammimic.io.video"]


def test_no_module_imports_a_private_name_from_another():
    offences = []
    for name, path in MODULES.items():
        for source, names, line in _imports(name, path):
            if source == name:
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                offences.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {private} from {source}")
    assert not offences, "\n".join(offences)


def test_the_import_graph_has_no_cycle():
    cycles = _cycles(_graph())
    assert not cycles, f"import cycles among cammimic modules (function-level imports included): {cycles}"


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_run_modules_import_light():
    """What `cammimic run` goes through before it needs a model imports no heavy library."""
    modules = ["cammimic.api", "cammimic.methods.cammimic", "cammimic.methods.homography", "cammimic.rundir",
               "cammimic.io", "cammimic.sampling", "cammimic.results"]
    code = (f"import sys, {', '.join(modules)};"
            "heavy = [m for m in ('torch', 'kornia', 'cv2', 'av', 'diffusers', 'transformers', 'peft', 'matplotlib')"
            " if m in sys.modules];"
            "assert not heavy, heavy")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
