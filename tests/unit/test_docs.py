"""The README and docs/ must stay true: links resolve, the README stays a first page, no file
names a path outside the repository, and the settings table says what the code does.

The settings table in docs/configuration.md is the one place where defaults are written
down, so it is checked against the settings themselves: the same variables, and each
documented default, set explicitly, loads the same settings as leaving it unset.
"""

from __future__ import annotations

import ast
import importlib
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
CONFIGURATION = DOCS / "configuration.md"
README_MAX_LINES = 150
# Spelled in pieces so that this file does not name them itself.
OUTSIDE_PATHS = (".." + "/shared", "shared" + "/akool", "shared" + "/notes")
# Documented in the settings table, read by boto3 rather than by the settings.
EXTERNAL_VARIABLES = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
}
NO_DEFAULT = "—"
# Headings of docs/akool.md that code comments cite.
AKOOL_SECTIONS = (
    "## Endpoints",
    "## Authentication",
    "## Business codes",
    "## Webhooks",
    "## Deletion after 7 days",
)

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"`[^`\n]*`")
# [text](target) and ![alt](target), the target up to a space (a title) or the paren.
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
_NAME = re.compile(r"`([A-Z][A-Z0-9_]+)`")
# A constant named with its module, the way the docs name them: "`NAME` (module)",
# "`NAME` (module, ...", "(`NAME`, module)"; the module is its file's name, the last word.
_ATTRIBUTED = (
    re.compile(r"`([A-Z][A-Z0-9_]{2,})`\s*\(([a-z_]+(?: [a-z_]+)?)[),:;]"),
    re.compile(r"\(`([A-Z][A-Z0-9_]{2,})`, ([a-z_]+)[);]"),
)


def markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def prose(text: str) -> str:
    """The text without code: fenced blocks and inline code."""
    return _INLINE_CODE.sub("", _FENCE.sub("", text))


def relative_links(path: Path) -> Iterator[str]:
    """Every link target in `path` that is neither a URL nor an anchor of the same page."""
    for target in _LINK.findall(prose(path.read_text())):
        if _SCHEME.match(target) or target.startswith("#"):
            continue
        yield target


def repository_files() -> list[Path]:
    """Files git tracks, and new ones it does not ignore (docs being written count too)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [ROOT / name for name in sorted(set(listed.split("\0"))) if name]


def text_of(path: Path) -> str | None:
    """The file as text; None for a binary file or one that is gone from the worktree."""
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def module_constants() -> dict[str, set[str]]:
    """The names each module of the package assigns at its top level, by the module's file
    name (a name two modules share holds both)."""
    constants: dict[str, set[str]] = {}
    for path in (ROOT / "worker").rglob("*.py"):
        names = constants.setdefault(path.stem, set())
        for node in ast.parse(path.read_text()).body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            if isinstance(node, ast.AnnAssign):
                targets = [node.target]
            for target in targets:
                elements = target.elts if isinstance(target, ast.Tuple) else [target]
                names |= {e.id for e in elements if isinstance(e, ast.Name)}
    return constants


def settings_module() -> ModuleType:
    """The settings module, wherever the package keeps it."""
    for name in ("worker.settings", "worker.config.settings"):
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            continue
    raise AssertionError("no settings module: neither worker.settings nor worker.config.settings")


class RecordingEnv(Mapping[str, str]):
    """An environment that notes every variable looked up in it."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = dict(values or {})
        self.looked_up: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.looked_up.add(name)
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def load(env: Mapping[str, str]) -> Any:
    return settings_module().load_settings(RecordingEnv(env))


def settings_variables() -> set[str]:
    """Every variable the settings read: those looked up while loading the defaults, and
    those the module's source names as read (a lookup only some values make)."""
    env = RecordingEnv()
    settings_module().load_settings(env)
    source = Path(settings_module().__file__ or "").read_text()
    named = set(re.findall(r'env(?:\.get\(|, )"([A-Z][A-Z0-9_]+)"', source))
    return env.looked_up | named


def configuration_table() -> dict[str, str]:
    """The settings table of docs/configuration.md: each variable and its default cell's
    value (the first code span, or NO_DEFAULT)."""
    text = CONFIGURATION.read_text()
    header = re.search(r"^\| variable \| default \| meaning \|\n\|[-| ]+\|\n", text, re.MULTILINE)
    assert header, "docs/configuration.md has no `| variable | default | meaning |` table"
    table: dict[str, str] = {}
    for line in text[header.end() :].splitlines():
        if not line.startswith("|"):
            break
        cells = [cell.strip() for cell in line.strip().strip("|").split(" | ")]
        names, default = _NAME.findall(cells[0]), cells[1]
        assert names, f"a row of the settings table names no variable: {line[:80]!r}"
        value = re.search(r"`([^`]*)`", default)
        for name in names:
            assert name not in table, f"{name} is listed twice in the settings table"
            table[name] = value[1] if value else default
    return table


def test_every_relative_link_in_the_readme_and_docs_resolves() -> None:
    broken = []
    for path in markdown_files():
        for target in relative_links(path):
            file_part = target.split("#", 1)[0]
            if not (path.parent / file_part).resolve().is_file():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_links_are_found_in_prose_and_images_but_not_in_code() -> None:
    sample = "see [x](b.md#c) and ![img](d.png)\n```\n[in](code.md)\n```\n`[inline](e.md)` [u](https://x.y)\n"
    found = list(_LINK.findall(prose(sample)))
    assert found == ["b.md#c", "d.png", "https://x.y"], found


def test_every_constant_named_with_its_module_is_defined_in_that_module() -> None:
    constants = module_constants()
    settings = set(configuration_table())
    wrong = []
    for path in markdown_files():
        text = path.read_text()
        for pattern in _ATTRIBUTED:
            for name, words in pattern.findall(text):
                module = words.split()[-1]
                if name not in settings and name not in constants.get(module, set()):
                    wrong.append(f"{path.relative_to(ROOT)}: `{name}` ({words})")
    assert not wrong, "named with a module that does not define it:\n" + "\n".join(wrong)


def test_the_readme_is_a_first_page_of_at_most_150_lines() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def test_no_file_in_the_repository_names_a_path_outside_it() -> None:
    offending = []
    for path in repository_files():
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if any(outside in line for outside in OUTSIDE_PATHS):
                offending.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not offending, "\n".join(offending)


def test_the_settings_table_lists_exactly_the_settings_of_the_package() -> None:
    documented = set(configuration_table()) - EXTERNAL_VARIABLES
    read = settings_variables()
    assert {"REDIS_URL", "AKOOL_MAX_RPS", "PORT"} <= read, read
    assert not read - documented, f"docs/configuration.md lacks {sorted(read - documented)}"
    assert not documented - read, f"no setting reads {sorted(documented - read)}"


@pytest.mark.parametrize("name", sorted(set(configuration_table()) - EXTERNAL_VARIABLES))
def test_each_documented_default_is_the_default_of_the_code(name: str) -> None:
    defaults = load({})
    documented = configuration_table()[name]
    if documented == NO_DEFAULT:
        # Unset means off, or nothing: a field of that name holds nothing.
        value = getattr(defaults, name.lower(), None)
        assert value is None, f"{name} is documented without a default, but it is {value!r}"
        return
    explicit = load({name: documented})
    assert explicit == defaults, (
        f"{name}={documented} (the documented default) does not load the default settings"
    )


def test_a_wrong_default_would_be_caught() -> None:
    assert load({"AKOOL_MAX_RPS": "6"}) != load({})
    assert load({"ARCHIVE_ALLOWED_HOSTS": "*.akool.com"}) != load({})


def test_akool_md_keeps_the_section_headings_code_comments_cite() -> None:
    headings = set((DOCS / "akool.md").read_text().splitlines())
    missing = [heading for heading in AKOOL_SECTIONS if heading not in headings]
    assert not missing, missing


def test_every_test_the_docs_name_exists() -> None:
    """The guarantees name the tests that prove them: a renamed test must be renamed there."""
    named = {
        name
        for path in markdown_files()
        for name in re.findall(r"`(test_[a-z0-9_]+)`", path.read_text())
    }
    defined = {
        match
        for path in (ROOT / "tests").rglob("test_*.py")
        for match in re.findall(r"^(?:async )?def (test_[a-z0-9_]+)", path.read_text(), re.M)
    }
    modules = {path.stem for path in (ROOT / "tests").rglob("test_*.py")}
    assert sorted(named - defined - modules) == []
