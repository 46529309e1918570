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
        lines += ["", f"## {section.title}", ""]
        if section.intro:
            lines += [section.intro, ""]
        if section.headers:
            lines += _table(section.headers, section.rows)
            lines.append("")
        lines += [f"- {note}" for note in section.notes]
        for title, text in section.profiles:
            lines += ["", f"**{title}**", "", "```text", text.rstrip(), "```"]
        lines += ["", f"_Section took {fmt(section.seconds, 0)} s._"]
    lines.append("")
    return "\n".join(lines)
