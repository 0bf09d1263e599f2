"""The package layout of DESIGN.md: no import cycles between or inside packages, the grammar below the
engine, and an installed wheel that holds every package and data file."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

import pytest

from support import ROOT

TOPS = {"engine": "ruledesk.engine", "grammar": "ruledesk.grammar", "actions": "ruledesk.actions"}


def _modules() -> dict[str, Path]:
    """Every module of the three top-level folders by its installed name (packages by their __init__)."""
    found = {}
    for folder, prefix in TOPS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([prefix, *parts])] = path
    return found


MODULES = _modules()
PACKAGES = sorted(name for name, path in MODULES.items() if path.name == "__init__.py")


def _imports(path: Path) -> set[str]:
    """The ruledesk modules a file imports, at any depth except under ``if TYPE_CHECKING:``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {name for name in found if name.startswith("ruledesk")}


def _package_of(module: str) -> str:
    """The innermost package holding ``module`` (a package is its own)."""
    if module in PACKAGES:
        return module
    return module.rsplit(".", 1)[0]


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_relative_imports_and_every_import_resolves() -> None:
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        relative = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]
        assert not relative, f"{path}: relative imports at lines {relative}"
        unknown = {m for m in _imports(path) if m not in MODULES}
        assert not unknown, f"{path} imports modules that do not exist: {unknown}"


def test_no_import_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in MODULES.items():
        source = _package_of(name)
        for target in _imports(path):
            package = _package_of(target)
            # a package's __init__ gathers its own modules (the public face); that is not a dependency
            if package != source and not (name == source and package.startswith(source + ".")):
                graph[source].add(package)
    assert _cycle(graph) is None, f"import cycle between packages: {' -> '.join(_cycle(graph))}"


def test_no_import_cycle_inside_a_package() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in MODULES.items():
        for target in _imports(path):
            if _package_of(target) == _package_of(name) and target != name and target not in PACKAGES:
                graph[name].add(target)
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_the_grammar_imports_nothing_from_the_engine_and_models_nothing_from_above() -> None:
    below = {"ruledesk.grammar": ("ruledesk.engine", "ruledesk.actions"),
             "ruledesk.engine.model": ("ruledesk.engine.lang", "ruledesk.engine.run", "ruledesk.engine.jobs",
                                       "ruledesk.engine.testing", "ruledesk.engine.cli", "ruledesk.actions")}
    for name, path in MODULES.items():
        for package, forbidden in below.items():
            if name == package or name.startswith(package + "."):
                bad = {m for m in _imports(path) if m.startswith(forbidden)}
                assert not bad, f"{name} (in {package}) imports {bad}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    source = tmp_path_factory.mktemp("source")  # a clean copy: no build/ left over from an earlier build
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in TOPS:
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    for name in ("setup.py", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out),
                    str(source)], check=True, capture_output=True)
    [built] = out.glob("ruledesk-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_holds_every_package_module_and_data_file(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    expected = set()
    for folder in TOPS:
        for path in (ROOT / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                expected.add(f"ruledesk/{folder}/{path.relative_to(ROOT / folder).as_posix()}")
    missing = sorted(expected - names)
    assert not missing, f"not in the wheel: {missing}"
    assert "ruledesk/grammar/ruledesk.lark" in names
