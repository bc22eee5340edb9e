"""Every module of the product packages imports (catches errors no test path reaches), none
builds anything at import, and no two modules import each other, even for type hints only."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.process import REPO, bot_environ

PACKAGES = ("actors", "gateway", "store", "sandbox")
# sandbox.__main__ runs a server: it is exercised as a process.
SKIP = {"sandbox.__main__"}


def _modules() -> list[str]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            if info.name not in SKIP:
                names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules())
def test_module_imports(name: str) -> None:
    importlib.import_module(name)


def test_importing_the_asgi_module_builds_no_app(tmp_path: Path) -> None:
    """hypercorn calls ``gateway.asgi:create_app()``; the import alone reads no setting, makes
    no data directory and starts nothing, even with settings that ``create_app`` refuses."""
    env = bot_environ(None, tmp_path / "data", env="production")
    env["WABOT_BUFFER_SECONDS"] = "soon"
    code = "import gateway.asgi as m; print(sorted(k for k in vars(m) if k == 'app'))"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().strip() == "[]" and not done.stderr
    assert not (tmp_path / "data").exists()


def _import_graph() -> dict[str, set[str]]:
    """Module -> the product modules it imports (``TYPE_CHECKING`` imports included)."""
    files = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            files[name] = path
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    graph = _import_graph()
    assert "gateway.service" in graph["gateway.server"], "the graph must see real imports"
    assert _cycles(graph) == []
