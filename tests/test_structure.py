"""The shape of the library, checked: every module imports, the import graph has no cycle, a function-level import
of the library says why, and no function is longer than a reader can hold (issue 28)."""

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "platform"
PACKAGE = ROOT / "polyglot_lion"
MAX_FUNCTION_LINES = 120


def _modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of the package (a package by its __init__.py)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _resolve(name: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` in module ``name`` names (``name`` a package: relative to itself)."""
    if not node.level:
        return node.module or ""
    is_package = MODULES[name].name == "__init__.py"
    base = name.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _module_level_imports(name: str) -> set[str]:
    """The library modules ``name`` imports when it is imported: import statements outside functions (class bodies
    and module-level ``if``/``try`` included, ``if TYPE_CHECKING:`` not)."""
    found = set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name in MODULES)
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(name, node)
                if target in MODULES:
                    found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES)
            visit(ast.iter_child_nodes(node))

    visit(ast.parse(MODULES[name].read_text()).body)
    found.discard(name)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path (first node repeated at the end), or None. Pure."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(node):
        state[node], _ = 1, path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := dfs(nxt)):
                return cycle
        state[node], _ = 2, path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (cycle := dfs(start)):
            return cycle
    return None


def test_find_cycle_finds_one_and_only_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name):
    importlib.import_module(name)


def test_the_import_graph_has_no_cycle():
    graph = {name: _module_level_imports(name) for name in MODULES}
    assert graph["polyglot_lion.train.run"] >= {"polyglot_lion.train.loop", "polyglot_lion.tracking"}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_tracking_reads_checkpoints_not_the_loop():
    tracking = {m for n in MODULES if n.startswith("polyglot_lion.tracking") for m in _module_level_imports(n)}
    assert "polyglot_lion.train.checkpoints" in tracking and "polyglot_lion.train.loop" not in tracking


def test_a_function_level_import_of_the_library_says_why():
    """Imports belong at the top of a module; one inside a function (to keep a heavy dependency off an import path)
    carries a comment on its line or the line above that says so."""
    silent = []
    for path in MODULES.values():
        lines = path.read_text().splitlines()
        for fn in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                library = (isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(
                    "polyglot_lion"))) or (isinstance(node, ast.Import) and any(
                        a.name.startswith("polyglot_lion") for a in node.names))
                if not library:
                    continue
                line, above = lines[node.lineno - 1], lines[node.lineno - 2] if node.lineno > 1 else ""
                if "#" not in line and not above.strip().startswith("#"):
                    silent.append(f"{path.relative_to(ROOT)}:{node.lineno}: {line.strip()}")
    assert not silent, "function-level imports without a reason:\n" + "\n".join(sorted(set(silent)))


def test_no_function_is_longer_than_120_lines():
    long = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.name} ({n} lines)")
    assert not long, "functions over 120 lines:\n" + "\n".join(long)


def test_the_training_loop_reads_in_150_lines():
    tree = ast.parse((PACKAGE / "train" / "loop.py").read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "train_loop_per_worker")
    assert fn.end_lineno - fn.lineno + 1 <= 150


def test_the_command_line_loads_no_heavy_dependency_until_a_command_runs():
    """`polyglot-lion --help` (and every command's parser) imports neither torch, transformers, Ray nor MLflow: the
    handlers that need them import them when they run."""
    code = ("import sys; from polyglot_lion.cli import build_parser; build_parser().format_help(); "
            "print(' '.join(m for m in ('torch', 'transformers', 'ray', 'mlflow') if m in sys.modules))")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "", f"loaded at startup: {proc.stdout.strip()}"
