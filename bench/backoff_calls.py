"""Akool calls per job with the backoff schedule, on a simulated clock.

The worker submits, polls at once (the chain runs poll right after submit), then waits
`worker.waiting.next_poll_delay` between polls: the real function, fed the job's poll count
as the worker records it, with the default settings. A job that Akool finishes `duration`
seconds after the submit is noticed at the first poll at or after that time. Jitter comes
from the module-level `random`, so each seed is one possible run; figures are averaged over
many seeds. The reference is a fixed 5-second poll.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import replace
from pathlib import Path

from bench.common import Deadline, Section, fmt, verdict
from worker.config.settings import load_settings
from worker.status import JobStatus
from worker.store import Job
from worker.waiting import next_poll_delay

DURATIONS = (30.0, 300.0, 1800.0)
# The goal holds for jobs of 5 and 30 minutes.
GOAL_DURATIONS = (300.0, 1800.0)
FIXED_INTERVAL = 5.0
SEEDS = 2000
SMOKE_SEEDS = 20
GOAL_RATIO = 1 / 5
MAX_POLLS = 100_000


def simulate(duration: float, seed: int | None, fixed: float | None = None) -> tuple[int, float]:
    """(polls, detection delay) for a job done `duration` s after its submit."""
    settings = load_settings({})  # the defaults: POLL_INITIAL 5 s, POLL_MAX 60 s
    if seed is not None:
        random.seed(seed)
    job = Job(
        id="0" * 32,
        status=JobStatus.PROCESSING,
        video_url="",
        audio_url="",
        submitted_ts=0.0,
        poll_deadline_ts=settings.poll_timeout_seconds,
    )
    now = 0.0
    for polls in range(1, MAX_POLLS):
        if now >= duration:
            return polls, now - duration
        if fixed is not None:
            now += fixed
        else:
            now += next_poll_delay(replace(job, polls=polls), settings, now=now)
    raise RuntimeError("the poll loop did not end")


def run(*, smoke: bool, work: Path, deadline: Deadline) -> Section:
    """Every duration over SEEDS jitter seeds (SMOKE_SEEDS at smoke size)."""
    seeds = SMOKE_SEEDS if smoke else SEEDS
    settings = load_settings({})
    section = Section("Akool calls per job (backoff schedule, simulated clock)", smoke=smoke)
    section.table(
        ["setting", "value"],
        [
            ["POLL_INITIAL_SECONDS (default)", f"{settings.poll_initial_seconds:g}"],
            ["POLL_MAX_SECONDS (default)", f"{settings.poll_max_seconds:g}"],
            ["jitter seeds", str(seeds)],
            ["reference: fixed poll every, s", f"{FIXED_INTERVAL:g}"],
        ],
    )
    rows: list[list[str]] = []
    raw: dict[float, dict[str, float]] = {}
    for duration in DURATIONS:
        runs = [simulate(duration, seed) for seed in range(seeds)]
        calls = statistics.fmean(1 + p for p, _ in runs)
        delays = [d for _, d in runs]
        fixed_calls = 1 + simulate(duration, None, FIXED_INTERVAL)[0]
        ratio = calls / fixed_calls
        judged = (
            verdict(ratio <= GOAL_RATIO, f"{ratio:.3f}", smoke=smoke)
            if duration in GOAL_DURATIONS
            else "n/a (goal is for 5 and 30 min)"
        )
        rows.append(
            [
                _label(duration),
                fmt(calls, 2),
                str(fixed_calls),
                fmt(ratio, 3),
                judged,
                f"{fmt(statistics.fmean(delays), 1)} / {fmt(max(delays), 1)}",
            ]
        )
        raw[duration] = {"calls": calls, "fixed": fixed_calls, "max_delay": max(delays)}
    section.table(
        [
            "job takes",
            "calls, backoff (mean)",
            "calls, fixed 5 s",
            "ratio",
            f"goal <= {GOAL_RATIO:.2f}",
            "detection delay mean / max s",
        ],
        rows,
    )
    section.raw = {_label(d): figures for d, figures in raw.items()}
    for duration in GOAL_DURATIONS:
        figures = raw[duration]
        ratio = figures["calls"] / figures["fixed"]
        section.goal(
            f"Akool calls <= 1/5 of fixed 5 s ({_label(duration)} job)",
            f"{fmt(figures['calls'], 1)} calls",
            f"{figures['fixed']} calls",
            ratio <= GOAL_RATIO,
            f"{ratio:.3f}",
        )
    worst = max(f["max_delay"] for f in raw.values())
    limit = settings.poll_max_seconds
    section.goal(
        "completion noticed within POLL_MAX_SECONDS",
        f"worst {fmt(worst, 1)} s",
        f"{limit:g} s",
        worst <= limit,
    )
    return section


def _label(seconds: float) -> str:
    return f"{seconds:g} s" if seconds < 60 else f"{seconds / 60:g} min"
