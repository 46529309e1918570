"""Render the sections of a run as bench/RESULTS.md, or merge one part's into it.

A part's section is headed `## <part>: <title>` and its goal rows carry the part's name in
their first cell, so `merge` finds them again; both stand in the order the parts run."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import TypeVar

from bench.common import Section, fmt

GOAL_HEADERS = ["part", "goal", "measured", "reference", "verdict"]
T = TypeVar("T")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def clean(cell: str) -> str:
        return str(cell).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(clean(h) for h in headers) + " |"]
    out.append("|" + "|".join("---" for _ in headers) + "|")
    out += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return out


def _goal_rows(section: Section) -> list[str]:
    return _table(GOAL_HEADERS, [[section.part, *row] for row in section.goals])[2:]


def render(
    sections: Sequence[Section],
    *,
    started: dt.datetime,
    seconds: float,
    machine: dict[str, str],
    versions: dict[str, str],
    command: str,
    skipped: Sequence[str] = (),
    smoke: bool = False,
) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{command}` on {started:%Y-%m-%d %H:%M} UTC; the run took "
        f"{fmt(seconds / 60, 1)} min. Every figure below comes from this one run. Regenerate "
        "with `make bench` (it rewrites this file). What each part measures, how, and what "
        "its figures mean: [NOTES.md](NOTES.md).",
        "",
    ]
    if smoke:
        lines += ["Smoke run: every part at a tiny size; its verdicts are not judged.", ""]
    lines += ["## Machine", ""]
    lines += [f"- {name}: {value}" for name, value in machine.items()]
    lines.append("- packages: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines += ["", "## Goals", "", *_table(GOAL_HEADERS, [])]
    for section in sections:
        lines += _goal_rows(section)
    if skipped:
        lines += ["", "Not run: " + "; ".join(skipped) + "."]
    for section in sections:
        lines += _section_lines(section)
    lines.append("")
    return "\n".join(lines)


def _section_lines(section: Section, provenance: str = "") -> list[str]:
    lines = ["", f"## {section.part}: {section.title}", ""]
    lines += [f"Method and analysis: [NOTES.md](NOTES.md#{section.part}).", ""]
    for headers, rows in section.tables:
        lines += [*_table(headers, rows), ""]
    for title, text in section.profiles:
        lines += [f"**{title}**", "", "```text", text.rstrip(), "```", ""]
    lines.append(f"_Section took {fmt(section.seconds, 0)} s.{provenance}_")
    return lines


def merge(
    text: str,
    section: Section,
    order: Sequence[str],
    *,
    command: str,
    started: dt.datetime,
) -> str:
    """`text` (a RESULTS.md) with one part's goal rows and section replaced by a newer run's,
    each where `order` (the parts' names, in the order they run) puts it, everything else as
    it was."""
    lines = text.rstrip("\n").split("\n")
    start, end = _goals_table(lines)
    rows = _placed(lines[start:end], _goal_rows(section), section.part, order, _row_part)
    lines = lines[:start] + rows + lines[end:]
    first = next((i for i, line in enumerate(lines) if _heading_part(line) is not None), None)
    head, body = (lines, []) if first is None else (lines[:first], lines[first:])
    while head and not head[-1]:
        head.pop()
    provenance = (
        f" Written by `{command}` on {started:%Y-%m-%d %H:%M} UTC, apart from the run above."
    )
    blocks = _blocks(body)
    new = _section_lines(section, provenance)[1:]  # its blank line comes with the join
    placed = _placed(blocks, [new], section.part, order, lambda block: _heading_part(block[0]))
    out = [*head, ""] + [line for block in placed for line in [*block, ""]]
    return "\n".join(out).rstrip("\n") + "\n"


def _goals_table(lines: list[str]) -> tuple[int, int]:
    """The indexes of the Goals table's first row (past its two header lines) and just past
    its last."""
    index = lines.index("## Goals") + 1
    while not lines[index].startswith("|"):
        index += 1
    start = index + 2
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return start, end


def _row_part(row: str) -> str:
    return row.strip("|").split("|", 1)[0].strip()


def _heading_part(line: str) -> str | None:
    """The part a `## <part>: <title>` heading names; None for any other line."""
    if not line.startswith("## ") or ":" not in line:
        return None
    return line[3:].split(":", 1)[0]


def _blocks(lines: list[str]) -> list[list[str]]:
    """`lines` cut before each `## ` heading, trailing blank lines dropped."""
    blocks: list[list[str]] = []
    for line in lines:
        if line.startswith("## ") or not blocks:
            blocks.append([])
        blocks[-1].append(line)
    for block in blocks:
        while block and not block[-1]:
            block.pop()
    return blocks


def _placed(
    items: list[T],
    new: list[T],
    part: str,
    order: Sequence[str],
    part_of: Callable[[T], str | None],
) -> list[T]:
    """`items` without those of `part`, `new` put before the first item of a later part."""
    kept = [item for item in items if part_of(item) != part]
    rank = {name: i for i, name in enumerate(order)}
    later = [i for i, item in enumerate(kept) if rank.get(part_of(item) or "", 0) > rank[part]]
    at = later[0] if later else len(kept)
    return kept[:at] + new + kept[at:]
