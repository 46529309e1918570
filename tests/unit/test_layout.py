"""The house rules of worker/, read from the code itself: no import circles, no project
import hidden inside a function, no module past 450 lines, one installed package."""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "worker"
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _imports(path: Path) -> Iterator[tuple[ast.stmt, str]]:
    """Every project module an import statement of `path` names."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name in MODULES:
                yield node, name


def _graph() -> dict[str, set[str]]:
    # `from worker import x` loads the package first; the package's own imports are its
    # public surface, so edges into `worker` itself are left out.
    return {
        module: {target for _, target in _imports(path) if target not in (module, "worker")}
        for module, path in MODULES.items()
    }


def _circle_through(graph: dict[str, set[str]], start: str) -> list[str] | None:
    """A path start -> ... -> start, if there is one."""
    stack = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in graph[node]:
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def test_no_module_of_the_package_imports_itself_round_in_a_circle() -> None:
    graph = _graph()
    circles = [c for m in graph if (c := _circle_through(graph, m)) is not None]
    assert circles == []


def test_no_project_import_hides_inside_a_function() -> None:
    hidden = [
        f"{path.relative_to(ROOT)}:{node.lineno} imports {target}"
        for path in MODULES.values()
        for node, target in _imports(path)
        if node.col_offset > 0
    ]
    assert hidden == []


def test_no_module_passes_450_lines() -> None:
    long = {
        str(path.relative_to(ROOT)): n
        for path in MODULES.values()
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_the_distribution_installs_the_worker_package_only() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["tool"]["setuptools"]["packages"]["find"]["include"] == ["worker*"]
    assert not (ROOT / "config" / "__init__.py").exists()


def test_every_redis_key_of_ours_is_named_in_worker_keys_only() -> None:
    key_literal = re.compile(r"[\"']lipsync:[a-z_]")
    owners = {
        str(path.relative_to(ROOT))
        for path in MODULES.values()
        if key_literal.search(path.read_text())
    }
    assert owners <= {"worker/keys.py"}
