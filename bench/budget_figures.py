"""The budget part's figures, from what bench/trace.py recorded in the worker: task runs, the
status calls sent to Akool, every poll task's outcome and round trips, the main process's
round trips; and the seeded jobs' notional previous polls (bench.seed)."""

from __future__ import annotations

import itertools
import statistics
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import percentile
from bench.trace import read_records

# Worker log lines worth counting (substring -> label).
LOG_PATTERNS = {
    "another poll loop owns this job": "another poll loop owns the job",
    "request budget spent": "budget spent (a slot reserved for later, or refused)",
    "WARNING": "WARNING lines",
    "ERROR": "ERROR lines",
    "Traceback": "tracebacks",
}


@dataclass(frozen=True)
class PollRun:
    """One poll task run, as bench/trace.py recorded it."""

    start: float
    end: float
    outcome: str
    reserved_at: float | None
    state: str
    ours: int
    celery: int
    commands: str

    @property
    def work(self) -> int:
        """Our round trips less redis-py's health-check PINGs (a connection idle past
        `health_check_interval` pings before its next command: not the poll's work)."""
        return self.ours - self.commands.split(",").count("PING")


def read_tasks(directory: Path) -> list[tuple[float, str]]:
    """Every task run: (start epoch, task name)."""
    return [(float(p[0]), p[1]) for p in read_records(directory, "tasks") if len(p) == 2]


def read_calls(directory: Path) -> dict[str, list[float]]:
    """Epochs of the status calls sent to Akool, by Akool id, in order."""
    calls: dict[str, list[float]] = {}
    for parts in read_records(directory, "calls"):
        if len(parts) == 2:
            calls.setdefault(parts[1], []).append(float(parts[0]))
    return {akool_id: sorted(times) for akool_id, times in calls.items()}


def read_polls(directory: Path) -> list[PollRun]:
    """Every poll task run (task_postrun)."""
    out = []
    for p in read_records(directory, "polls"):
        if len(p) == 8:
            reserved = float(p[3])
            slot = reserved if reserved >= 0 else None
            start, end, ours, celery = float(p[0]), float(p[1]), int(p[5]), int(p[6])
            out.append(PollRun(start, end, p[2], slot, p[4], ours, celery, p[7]))
    return out


def read_main_redis(directory: Path) -> list[tuple[float, int, int]]:
    """The main process's round trips so far, sampled: (epoch, ours, Celery's)."""
    rows = [
        (float(p[0]), int(p[1]), int(p[2])) for p in read_records(directory, "redis") if len(p) == 3
    ]
    return sorted(rows)


def read_previous(path: Path) -> dict[str, float]:
    """The seeded jobs' notional previous polls (bench.seed, BENCH_SEED_PREVIOUS)."""
    out = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            out[parts[0]] = float(parts[1])
    return out


def gap_figures(
    calls: Mapping[str, list[float]], previous: Mapping[str, float], start: float, end: float
) -> dict[str, Any]:
    """Gaps between consecutive status calls of each job, its first gap (from the seeded
    previous poll) apart, and the open gap at `end` (since its last poll, or since the
    seeded one): a job waiting longer than the goal by the end has missed it too. Gaps
    opening at or after `start` (the window) are the steady state's, also given apart."""
    gaps: list[float] = []
    steady: list[float] = []
    firsts: list[float] = []
    open_gaps: list[float] = []
    polled_twice = never = 0
    for akool_id, before in previous.items():
        times = calls.get(akool_id, [])
        if times:
            firsts.append(times[0] - before)
        else:
            never += 1
        polled_twice += len(times) >= 2
        gaps += [b - a for a, b in itertools.pairwise(times)]
        steady += [b - a for a, b in itertools.pairwise(times) if a >= start]
        open_gaps.append(end - (times[-1] if times else before))
    return {
        "jobs": len(previous),
        "polled_twice": polled_twice,
        "never_polled": never,
        "gaps": len(gaps),
        "gap_p50": percentile(gaps, 50),
        "gap_p99": percentile(gaps, 99),
        "gap_max": max(gaps, default=float("nan")),
        "steady_gaps": len(steady),
        "steady_p99": percentile(steady, 99),
        "steady_max": max(steady, default=float("nan")),
        "first_p50": percentile(firsts, 50),
        "first_max": max(firsts, default=float("nan")),
        "open_max": max(open_gaps, default=float("nan")),
    }


def task_figures(tasks: list[tuple[float, str]], start: float, end: float) -> dict[str, Any]:
    """Task runs in the window: how many, per second, by name."""
    names = Counter(name for at, name in tasks if start <= at <= end)
    total = sum(names.values())
    return {"tasks": total, "tasks_per_s": total / (end - start), "by_name": dict(names)}


def poll_figures(polls: list[PollRun], start: float, end: float) -> dict[str, Any]:
    """Poll task runs in the window: outcomes, lateness against their slot, round trips."""
    runs = [p for p in polls if start <= p.start and p.end <= end]
    late = [p.start - p.reserved_at for p in runs if p.reserved_at is not None]
    counted = [p for p in runs if p.ours >= 0]
    ours = [float(p.work) for p in counted]
    outcomes = Counter(p.outcome for p in runs)
    on_slot = Counter(p.outcome for p in runs if p.reserved_at is not None)
    by_outcome = {
        name: statistics.fmean(p.work for p in counted if p.outcome == name)
        for name in outcomes
        if any(p.outcome == name for p in counted)
    }
    return {
        "poll_runs": len(runs),
        "outcomes": dict(outcomes),
        "on_slot": dict(on_slot),
        "states": dict(Counter(p.state for p in runs)),
        "slot_late_p50": percentile(late, 50),
        "slot_late_p99": percentile(late, 99),
        "slot_late_max": max(late, default=float("nan")),
        "rt_counted": len(counted),
        "rt_mean": statistics.fmean(ours) if ours else float("nan"),
        "rt_p99": percentile(ours, 99),
        "rt_max": max(ours, default=float("nan")),
        "rt_by_outcome": by_outcome,
        "rt_histogram": dict(sorted(Counter(p.ours for p in counted).items())),
        "rt_pings": sum(p.ours - p.work for p in counted),
        "rt_sequences": Counter(f"{p.outcome}: {p.commands}" for p in counted).most_common(4),
        "celery_mean": statistics.fmean(p.celery for p in counted) if counted else float("nan"),
        "celery_max": max((p.celery for p in counted), default=-1),
    }


def main_redis_rate(samples: list[tuple[float, int, int]], start: float, end: float) -> float:
    """Celery's round trips a second in the worker's main process over the window."""
    inside = [s for s in samples if start <= s[0] <= end]
    if len(inside) < 2 or inside[0][2] < 0:
        return float("nan")
    first, last = inside[0], inside[-1]
    return (last[2] - first[2]) / max(last[0] - first[0], 1e-9)


def akool_calls(stats: Mapping[str, Any]) -> int:
    """Requests the simulator received on Akool's endpoints (1005 answers included)."""
    return sum(int(stats.get(k, 0)) for k in ("submits", "polls", "token_requests")) + int(
        stats.get("rate_limited", 0)
    )


def log_counts(text: str) -> dict[str, int]:
    """How many worker log lines match each of LOG_PATTERNS."""
    lines = text.splitlines()
    return {label: sum(s in line for line in lines) for s, label in LOG_PATTERNS.items()}
