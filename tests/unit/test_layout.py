"""The house rules of worker/, read from the code itself: no import circles, no project
import hidden inside a function, families that import only what lies below them, no module
past 450 lines (in worker/ and bench/), one installed package.

The layers, from the bottom (docs/development.md, "Layout"):
- the leaves: modules every layer may import, which import no other module of ours;
- the families, in order: each may import the leaves, its own siblings, and a family below
  it through that family's face (its `__init__`);
- the steps at the top level (pipeline, archive, ...), which use the families' faces;
- the entry points (api, deps, celery_app, tasks, and the cli, web and dev packages),
  which nothing below them imports.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "worker"
BENCH = ROOT / "bench"
MAX_LINES = 450
LEAVES = ("worker.errors", "worker.status", "worker.names", "worker.messages", "worker.clock")
# Lowest first: a family imports only families before it in this list.
FAMILIES = ("net", "config", "store", "akool", "waiting")
ENTRY_POINTS = ("worker.api", "worker.aio", "worker.deps", "worker.celery_app", "worker.tasks")
ENTRY_PACKAGES = ("cli", "web", "dev")
# Modules that own constants others import on their own: the leaves, and the settings'
# defaults (named once, in worker/config/settings.py).
CONSTANT_OWNERS = (*LEAVES, "worker.config", "worker.config.settings")


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
    # `from worker.store import keys` loads the package first; a package's own imports are
    # its face, so edges from a module into a package that contains it are left out.
    return {
        module: {
            target
            for _, target in _imports(path)
            if target != module and not module.startswith(target + ".")
        }
        for module, path in MODULES.items()
    }


def _family(module: str) -> str | None:
    """The subpackage a module belongs to (None for a top-level module)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and _is_package(module)) else None


def _is_package(module: str) -> bool:
    return MODULES[module].name == "__init__.py"


def _from_statements(path: Path) -> Iterator[ast.ImportFrom]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("worker"):
            yield node


def _reaches_inside(importer: str, node: ast.ImportFrom) -> str | None:
    """The family whose insides `importer` names, passing by its face."""
    parts = node.module.split(".") if node.module else []
    if len(parts) < 3 or parts[1] not in FAMILIES:
        return None
    return parts[1] if _family(importer) != parts[1] else None


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


def test_no_module_passes_450_lines_in_the_package_or_the_bench() -> None:
    paths = [*MODULES.values(), *BENCH.rglob("*.py")]
    long = {
        str(path.relative_to(ROOT)): n
        for path in paths
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_a_family_imports_only_the_leaves_its_siblings_and_the_faces_of_lower_families() -> None:
    wrong = []
    for module, targets in _graph().items():
        family = _family(module)
        if family not in FAMILIES:
            continue
        allowed = {*LEAVES, *(f"worker.{f}" for f in FAMILIES[: FAMILIES.index(family)])}
        for target in targets:
            if target in allowed or _family(target) == family:
                continue
            # `from worker.store import keys`: a submodule the face lists is part of it.
            if _family(target) in allowed_families(allowed) and _on_face(target):
                continue
            wrong.append(f"{module} imports {target}")
    assert wrong == []


def allowed_families(allowed: set[str]) -> set[str | None]:
    return {_family(name) for name in allowed if name.count(".") == 1 and _is_package(name)}


def _on_face(target: str) -> bool:
    """True for a submodule its family's `__init__` re-exports by name."""
    package, _, name = target.rpartition(".")
    face = MODULES.get(package)
    return face is not None and f'"{name}"' in face.read_text()


def test_outside_a_family_its_modules_are_reached_only_through_its_face() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}"
        for module, path in MODULES.items()
        for node in _from_statements(path)
        if _reaches_inside(module, node) is not None
    ]
    assert wrong == []


def test_nothing_below_the_entry_points_imports_them() -> None:
    entry = {*ENTRY_POINTS, *(f"worker.{p}" for p in ENTRY_PACKAGES)}

    def is_entry(module: str) -> bool:
        return any(module == e or module.startswith(e + ".") for e in entry)

    wrong = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        if not is_entry(module) and module != "worker"
        for target in targets
        if is_entry(target)
    ]
    assert wrong == []


def test_no_module_is_imported_only_for_a_constant_another_leaf_should_own() -> None:
    constant = re.compile(r"[A-Z][A-Z0-9_]*")
    wrong = [
        f"{path.relative_to(ROOT)}:{node.lineno} imports only constants from {node.module}"
        for module, path in MODULES.items()
        for node in _from_statements(path)
        if node.module not in CONSTANT_OWNERS
        and _family(module) != _family(node.module or "worker")
        and all(constant.fullmatch(alias.name) for alias in node.names)
    ]
    assert wrong == []


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
    assert owners <= {"worker/store/keys.py"}


def _reads_wall_clock(tree: ast.AST) -> Iterator[int]:
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "time"
            and isinstance(node.value, ast.Name)
            and node.value.id == "time"
        ):
            yield node.lineno


def test_only_worker_clock_reads_the_wall_clock() -> None:
    readers = [
        f"{path.relative_to(ROOT)}:{line}"
        for module, path in MODULES.items()
        if module != "worker.clock"
        for line in _reads_wall_clock(ast.parse(path.read_text()))
    ]
    assert readers == []


def test_no_function_takes_an_optional_now() -> None:
    """A moment is passed in (`now`) or a clock is (`clock`): never a `now` that may be
    None and is then read from the wall clock inside."""
    optional = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            args = node.args
            positional = [*args.posonlyargs, *args.args]
            defaulted = positional[len(positional) - len(args.defaults) :]
            pairs = [
                *zip(defaulted, args.defaults, strict=True),
                *zip(args.kwonlyargs, args.kw_defaults, strict=True),
            ]
            optional += [
                f"{path.relative_to(ROOT)}:{node.lineno} {node.name}"
                for arg, default in pairs
                if arg.arg == "now" and isinstance(default, ast.Constant) and default.value is None
            ]
    assert optional == []
