"""The shape of the project: no module anywhere (``cammimic/``, ``adapters/``, ``plugins/``,
``benchmarks/``, ``examples/``) reaches into another's private names, the import graph of
``cammimic/`` has no cycle (function-level imports included), and the modules a run goes through
import without the heavy libraries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cammimic"
#: Where code that imports lives, and the folder each module name is relative to (a plugin package
#: under ``plugins/`` imports as ``cammimic_x``, a benchmark or test script by its file name).
TREE = {
    "cammimic": ROOT,
    "adapters": ROOT / "adapters",
    "plugins": ROOT / "plugins",
    "benchmarks": ROOT / "benchmarks",
    "examples": None,
    "tests": ROOT / "tests",
}
#: The folders whose code must not import another module's private names (tests may: they test them).
CHECKED = ("cammimic", "adapters", "plugins", "benchmarks", "examples")


def _module_name(path: Path, base: Path = ROOT) -> str:
    parts = path.relative_to(base).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _example_base(path: Path) -> Path:
    """An example plugin's folder (``examples/plugins/NAME/``): its modules import from there; any
    other example script imports by its file name."""
    parts = path.relative_to(ROOT / "examples").parts
    return (
        ROOT / "examples" / Path(*parts[:2])
        if len(parts) > 3 and parts[0] == "plugins"
        else path.parent
    )


def _tree() -> dict[str, tuple[str, Path]]:
    """``module name -> (top folder, path)`` of every Python file of the project."""
    out = {}
    for top, base in TREE.items():
        for path in sorted((ROOT / top).rglob("*.py")):
            if any(part.startswith(".") or part in {"build", "__pycache__"} for part in path.parts):
                continue
            name = _module_name(path, base if base is not None else _example_base(path))
            out.setdefault(name, (top, path))
    return out


MODULES = _modules()
TREE_MODULES = _tree()


def _imports(name: str, path: Path, known=None) -> list[tuple[str, list[str], int]]:
    """``(module imported, names taken from it, line)`` for every import in ``path`` at any depth
    (top level, functions, ``if TYPE_CHECKING``) resolved to a module of ``known`` (default: the
    ``cammimic`` package)."""
    known = MODULES if known is None else known
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names = [a.name for a in node.names]
            # `from cammimic import io` imports the module cammimic.io
            submodules = [f"{source}.{n}" for n in names if f"{source}.{n}" in known]
            if submodules:
                found += [(m, [], node.lineno) for m in submodules]
                names = [n for n in names if f"{source}.{n}" not in known]
            if names:
                found.append((source, names, node.lineno))
    return [(m, n, line) for m, n, line in found if m in known]


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
    assert {
        "cammimic.api",
        "cammimic.io",
        "cammimic.io.video",
        "cammimic.methods.cammimic",
        "cammimic.rundir",
    } <= set(MODULES)
    graph = _graph()
    # function-level imports count: run_cammimic imports cammimic.training inside the function
    assert "cammimic.training" in graph["cammimic.methods.cammimic"]
    assert "cammimic.io.files" in graph["cammimic.io.video"]


def _private_imports() -> list[str]:
    offences = []
    for name, (top, path) in TREE_MODULES.items():
        if top not in CHECKED:
            continue
        for source, names, line in _imports(name, path, TREE_MODULES):
            if source == name:
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                offences.append(f"{path.relative_to(ROOT)}:{line} imports {private} from {source}")
    return offences


def test_the_whole_tree_is_covered():
    tops = {top for top, _ in TREE_MODULES.values()}
    assert set(CHECKED) <= tops
    for name in (
        "cammimic.kit",
        "cammimic_unet3d.backbone",
        "cammimic_wan.backbone",
        "cammimic_motionclone.guide",
        "cammimic_mybackbone.adapter",
        "eval_throughput",
        "test_eval",
    ):
        assert name in TREE_MODULES, name


def test_no_module_imports_a_private_name_from_another():
    offences = _private_imports()
    assert not offences, "\n".join(offences)


def test_the_private_import_check_sees_relative_and_cross_folder_imports(tmp_path, monkeypatch):
    """The check flags what it is for: a plugin taking a sibling's private helper, a benchmark a test's."""
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "def f():\n    from cammimic_unet3d.backbone import _temporal_modules, UNet3DAdapter\n"
    )
    found = _imports("cammimic_wan.backbone", plugin, TREE_MODULES)
    assert ("cammimic_unet3d.backbone", ["_temporal_modules", "UNet3DAdapter"], 2) in found
    script = tmp_path / "script.py"
    script.write_text("from test_eval import _helper\nfrom .locator import _x\n")
    found = _imports("cammimic_wan.backbone", script, TREE_MODULES)
    assert ("test_eval", ["_helper"], 1) in found and ("cammimic_wan.locator", ["_x"], 2) in found


def test_the_import_graph_has_no_cycle():
    cycles = _cycles(_graph())
    assert not cycles, (
        f"import cycles among cammimic modules (function-level imports included): {cycles}"
    )


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_run_modules_import_light():
    """What `cammimic run` goes through before it needs a model imports no heavy library."""
    modules = [
        "cammimic.api",
        "cammimic.methods.cammimic",
        "cammimic.methods.homography",
        "cammimic.rundir",
        "cammimic.io",
        "cammimic.sampling",
        "cammimic.results",
    ]
    code = (
        f"import sys, {', '.join(modules)};"
        "heavy = [m for m in ('torch', 'kornia', 'cv2', 'av', 'diffusers', 'transformers', 'peft', 'matplotlib')"
        " if m in sys.modules];"
        "assert not heavy, heavy"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
