"""Shared helpers: environment for child processes, medians, timing, a bench-wide deadline,
and what every part returns (a Section, its goal rows judged by `verdict`)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from worker.names import MiB

ROOT = Path(__file__).resolve().parent.parent
# The verdict of every goal row at smoke size: tiny sizes cannot meet the goals.
SMOKE_VERDICT = "smoke"
# How many runs of a part go side by side at smoke size.
SMOKE_THREADS = 3
T = TypeVar("T")


def child_env(**extra: str) -> dict[str, str]:
    """The environment for bench child processes: local fake AWS credentials, no profile,
    the repository importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AKOOL_", "ARCHIVE_"))}
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "PYTHONPATH": str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("AWS_PROFILE", None)
    env.update(extra)
    return env


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank; nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return float(ordered[rank])


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": sys.version.split()[0]}
    for name in (
        "celery",
        "kombu",
        "redis",
        "boto3",
        "botocore",
        "s3transfer",
        "requests",
        "urllib3",
        "moto",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "missing"
    out["redis-server"] = _first_line(["redis-server", "--version"]).split(" sha=")[0]
    out["rclone"] = _first_line(["rclone", "version"])
    return out


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "missing"
    return (done.stdout or done.stderr).strip().splitlines()[0] if done.stdout else "missing"


def each(calls: Sequence[Callable[[], T]], *, side_by_side: bool = False) -> list[T]:
    """What each of `calls` returns, called one after the other, or SMOKE_THREADS side by
    side (at smoke size: its figures are not judged, and its time is processes starting)."""
    if not side_by_side:
        return [call() for call in calls]
    with ThreadPoolExecutor(SMOKE_THREADS) as pool:
        return list(pool.map(lambda call: call(), calls))


def verdict(ok: bool, detail: str = "", *, smoke: bool = False) -> str:
    """A goal's verdict: "met" or "missed", with `detail` in brackets when given; at smoke
    size SMOKE_VERDICT instead (the figures are not judged)."""
    word = SMOKE_VERDICT if smoke else "met" if ok else "missed"
    return f"{word} ({detail})" if detail else word


@dataclass
class Section:
    """What a part's `run()` returns: its figures (tables, profile blocks, `raw`) and its
    goal rows (goal, measured, reference, verdict), ready for RESULTS.md. `part` is the
    part's module name, set by `python -m bench`."""

    title: str
    smoke: bool = False
    part: str = ""
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)
    profiles: list[tuple[str, str]] = field(default_factory=list)
    goals: list[list[str]] = field(default_factory=list)
    seconds: float = 0.0
    raw: dict[str, Any] = field(default_factory=dict)

    def table(self, headers: list[str], rows: list[list[str]]) -> None:
        self.tables.append((headers, rows))

    def goal(self, goal: str, measured: str, reference: str, ok: bool, detail: str = "") -> None:
        """Add a goal row, judged by `verdict` (not judged at smoke size)."""
        self.goals.append([goal, measured, reference, verdict(ok, detail, smoke=self.smoke)])

    def not_judged(self, goal: str, why: str) -> None:
        """Add a goal row that could not be measured in this run, and why."""
        self.goals.append([goal, "", "", why])


class Deadline:
    """Wall-clock budget of the whole run; parts shorten their windows when it runs low."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


def fmt(value: float, digits: int = 1) -> str:
    if value != value:  # nan
        return "n/a"
    return f"{value:,.{digits}f}"


def mib(value: float) -> str:
    return fmt(value / MiB, 1)
