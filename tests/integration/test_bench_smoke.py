"""The bench (bench/, `python -m bench`) run at its smoke size, so that it cannot rot unseen:
every part must still run against the package as it is, and report its goal rows."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from bench.__main__ import NAMES

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT_SECONDS = 180


def goal_rows(report: str) -> list[list[str]]:
    """The cells of each row of the report's Goals table, its header lines left out."""
    lines = report.splitlines()
    start = lines.index("## Goals") + 1
    table = [line for line in lines[start:] if line.strip()]
    rows = []
    for line in table[2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


def test_every_bench_module_imports() -> None:
    for path in sorted((ROOT / "bench").glob("*.py")):
        importlib.import_module(f"bench.{path.stem}")


def test_every_bench_part_runs_at_a_tiny_size_and_reports_its_rows(tmp_path: Path) -> None:
    out = tmp_path / "r.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_SECONDS,
        check=False,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    report = out.read_text()
    rows = goal_rows(report)
    assert {row[0] for row in rows} == set(NAMES)
    for name in NAMES:
        assert f"\n## {name}: " in report
    assert all(row[-1].startswith(("smoke", "not run")) for row in rows), rows
