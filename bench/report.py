"""Render the sections of a run as bench/RESULTS.md."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from bench.common import Section, fmt


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def clean(cell: str) -> str:
        return str(cell).replace("|", "\\|").replace("\n", " ")

    out = ["| " + " | ".join(clean(h) for h in headers) + " |"]
    out.append("|" + "|".join("---" for _ in headers) + "|")
    out += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return out


def render(
    sections: Sequence[Section],
    *,
    started: dt.datetime,
    seconds: float,
    machine: dict[str, str],
    versions: dict[str, str],
    summary: Sequence[Sequence[str]],
    command: str,
    skipped: Sequence[str] = (),
) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `{command}` on {started:%Y-%m-%d %H:%M} UTC; the run took "
        f"{fmt(seconds / 60, 1)} min. Every figure below comes from this one run. Regenerate "
        "with `make bench` (it rewrites this file).",
        "",
        "## Machine",
        "",
    ]
    lines += [f"- {name}: {value}" for name, value in machine.items()]
    lines.append("- packages: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines += ["", "## Goals", ""]
    lines += _table(["goal", "measured", "reference", "verdict"], summary)
    if skipped:
        lines += ["", "Not run: " + "; ".join(skipped) + "."]
    for section in sections:
        lines += _section_lines(section)
    lines.append("")
    return "\n".join(lines)


def _section_lines(section: Section, provenance: str = "") -> list[str]:
    lines = ["", f"## {section.title}", ""]
    if section.intro:
        lines += [section.intro, ""]
    if section.headers:
        lines += _table(section.headers, section.rows)
        lines.append("")
    lines += [f"- {note}" for note in section.notes]
    for title, text in section.profiles:
        lines += ["", f"**{title}**", "", "```text", text.rstrip(), "```"]
    lines += ["", f"_Section took {fmt(section.seconds, 0)} s.{provenance}_"]
    return lines


def merge(
    text: str,
    section: Section,
    summary: Sequence[Sequence[str]],
    *,
    command: str,
    started: dt.datetime,
) -> str:
    """`text` (a RESULTS.md) with one part's goal rows and section replaced by a newer run's,
    everything else as it was. The part is the number its title starts with ("5.")."""
    part = section.title.split(" ", 1)[0]
    lines = text.rstrip("\n").split("\n")
    lines = _without_section(lines, part)
    table_end = _goals_table_end(lines)
    kept = lines[:table_end]
    kept = [line for line in kept if not line.startswith(f"| {part} ")]
    rows = _table(["goal", "measured", "reference", "verdict"], summary)[2:]
    provenance = (
        f" Written by `{command}` on {started:%Y-%m-%d %H:%M} UTC, apart from the run above."
    )
    return "\n".join(kept + rows + lines[table_end:] + _section_lines(section, provenance)) + "\n"


def _goals_table_end(lines: list[str]) -> int:
    """The index just past the last row of the Goals table."""
    index = lines.index("## Goals") + 1
    while not lines[index].startswith("|"):
        index += 1
    while index < len(lines) and lines[index].startswith("|"):
        index += 1
    return index


def _without_section(lines: list[str], part: str) -> list[str]:
    """`lines` without the section titled `## {part} ...`, up to the next `## ` title."""
    out: list[str] = []
    skipping = False
    for line in lines:
        if line.startswith("## "):
            skipping = line.startswith(f"## {part} ")
            if skipping and out and not out[-1]:
                out.pop()  # the blank line before it
        if not skipping:
            out.append(line)
    return out
