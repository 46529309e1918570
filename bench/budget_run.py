"""The budget part's run: a fresh stack, one instrumented worker at AKOOL_MAX_RPS=B, its idle
CPU, N jobs seeded into steady-state polling, then the window sampled (CPU, RSS, the
budget's queue and rate) and the trace read into figures (bench/budget_figures.py).
`Config` holds the sizes."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.budget_figures import (
    akool_calls,
    gap_figures,
    log_counts,
    main_redis_rate,
    poll_figures,
    read_calls,
    read_main_redis,
    read_polls,
    read_previous,
    read_tasks,
    task_figures,
)
from bench.common import fmt, percentile
from bench.procstat import cpu_seconds, rss_bytes, tree_cpu_seconds, tree_pids
from bench.stack import bench_env, bench_stack, running_worker, seed
from worker.dev.stack import Process, Stack
from worker.store import keys
from worker.waiting import poll_period

JOBS = 10_000
RPS = 5.0
IDLE_SECONDS = 60.0
# bench_env's POLL_MAX_SECONDS: every seeded job is due within it.
POLL_MAX_SECONDS = 60.0
# After the seeding, the window starts once every seeded poll has run (and this much more).
WARMUP_MARGIN_SECONDS = 15.0
# The worker, just started, is left alone this long before its idle CPU is measured.
START_SETTLE_SECONDS = 2.0
SAMPLE_SECONDS = 5.0
PROGRESS_SECONDS = 300.0
# Seconds to seed a job (a submit to the simulator, a record, a message), for the estimate.
SEED_SECONDS_PER_JOB = 0.006


@dataclass(frozen=True)
class Config:
    """The run's sizes: N jobs, B calls a second, the run after seeding, the idle measure."""

    jobs: int = JOBS
    rps: float = RPS
    seconds: float | None = None
    idle_seconds: float = IDLE_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Config:
        """The defaults, overridden by BENCH_BUDGET_JOBS, _RPS, _SECONDS, _IDLE_SECONDS."""
        seconds = env.get("BENCH_BUDGET_SECONDS")
        return cls(
            jobs=int(env.get("BENCH_BUDGET_JOBS", JOBS)),
            rps=float(env.get("BENCH_BUDGET_RPS", RPS)),
            seconds=float(seconds) if seconds else None,
            idle_seconds=float(env.get("BENCH_BUDGET_IDLE_SECONDS", IDLE_SECONDS)),
        )

    @property
    def turn(self) -> float:
        """N / B: how often the budget lets each job be polled."""
        return self.jobs / self.rps

    @property
    def period(self) -> float:
        """How often each job should be polled: N / B, or the longest backoff when longer
        (the budget does not bind then)."""
        return poll_period(self.jobs, self.rps, POLL_MAX_SECONDS)

    @property
    def run_seconds(self) -> float:
        """The run after the seeding: two turns and a margin unless set."""
        return self.seconds if self.seconds is not None else 2 * self.turn + 2 * POLL_MAX_SECONDS

    @property
    def warmup(self) -> float:
        """From the end of the seeding to the start of the window."""
        return min(POLL_MAX_SECONDS + WARMUP_MARGIN_SECONDS, self.run_seconds / 2)

    def expected_seconds(self) -> float:
        """About how long the whole part takes (stack, idle, seeding, run, stop)."""
        return 30 + self.idle_seconds + self.jobs * SEED_SECONDS_PER_JOB + self.run_seconds


def _idle(pid: int, seconds: float) -> dict[str, float]:
    """The worker's CPU (cores) and main-process RSS before there is any job."""
    cpu0, t0 = tree_cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    return {
        "idle_cores": (tree_cpu_seconds(pid) - cpu0) / elapsed,
        "idle_seconds": elapsed,
        "idle_main_rss": rss_bytes(pid),
    }


def _budget_state(client: redis.Redis, ceiling: float) -> tuple[float, float]:
    """(How far ahead the budget's next free slot is, s; the fleet's rate now)."""
    tat, rate = client.get(keys.AKOOL_BUDGET), client.hget(keys.AKOOL_BUDGET_RATE, "rps")
    ahead = max(0.0, int(tat) / 1e6 - time.time()) if tat else 0.0
    return ahead, float(rate) if rate else ceiling


def _sleep_until(epoch: float, label: str, stack: Stack) -> None:
    """Wait for `epoch`, saying every PROGRESS_SECONDS how far the run is."""
    while (left := epoch - time.time()) > 0:
        time.sleep(min(left, PROGRESS_SECONDS))
        if epoch - time.time() > 1:
            calls = akool_calls(stack.simulator.stats())
            print(
                f"bench: budget: {label}, {fmt(epoch - time.time(), 0)} s left, "
                f"{calls:,} Akool calls so far",
                flush=True,
            )


def _window(
    config: Config, stack: Stack, client: redis.Redis, pid: int, end: float
) -> dict[str, Any]:
    """Sample the worker and the budget until `end`; the window's counters and samples."""
    start, sim0, pids0 = time.time(), stack.simulator.stats(), tree_pids(pid)
    cpu0 = {p: cpu_seconds(p) for p in pids0}
    main_rss: list[int] = []
    ahead: list[float] = []
    rates: list[float] = []
    next_report = time.time() + PROGRESS_SECONDS
    while not main_rss or time.time() < end:
        main_rss.append(rss_bytes(pid))
        queue, rate = _budget_state(client, config.rps)
        ahead.append(queue)
        rates.append(rate)
        if time.time() >= next_report:
            next_report += PROGRESS_SECONDS
            print(
                f"bench: budget: window, {fmt(end - time.time(), 0)} s left, budget queue "
                f"{fmt(queue, 0)} s ahead",
                flush=True,
            )
        time.sleep(max(0.0, min(SAMPLE_SECONDS, end - time.time())))
    cpu1 = {p: cpu_seconds(p) - cpu0[p] for p in pids0}
    sim1, stopped = stack.simulator.stats(), time.time()
    return {
        "start": start,
        "end": stopped,
        "seconds": stopped - start,
        "calls": akool_calls(sim1) - akool_calls(sim0),
        "status_calls": int(sim1["polls"]) - int(sim0["polls"]),
        "rate_limited_total": int(sim1.get("rate_limited", 0)),
        "cpu_seconds": sum(cpu1.values()),
        "cpu_main_seconds": cpu1[pid],
        "pids_changed": sorted(tree_pids(pid)) != sorted(pids0),
        "main_rss_max": max(main_rss),
        "main_rss_end": main_rss[-1],
        "queue_ahead_p50": percentile(ahead, 50),
        "queue_ahead_max": max(ahead),
        "rate_min": min(rates),
    }


def _drive(
    config: Config, stack: Stack, env: dict[str, str], proc: Process, trace_dir: Path
) -> dict[str, Any]:
    """Idle, seed, wait out the warm-up, measure the window; the raw figures."""
    assert proc.proc is not None
    pid = proc.proc.pid
    client = redis.Redis.from_url(env["REDIS_URL"])
    time.sleep(START_SETTLE_SECONDS)
    idle = _idle(pid, config.idle_seconds)
    previous_path = trace_dir.parent / "previous.txt"
    timeout = max(300.0, config.jobs * SEED_SECONDS_PER_JOB * 10)
    seeded, seed_end = seed(env, config.jobs, previous=previous_path, timeout=timeout)
    print(
        f"bench: budget: seeded {config.jobs:,} jobs in {fmt(seed_end - seeded, 0)} s", flush=True
    )
    _sleep_until(seed_end + config.warmup, "warm-up", stack)
    try:
        window = _window(config, stack, client, pid, seed_end + config.run_seconds)
    finally:
        client.close()
    log = proc.log_text()
    proc.stop()
    previous = read_previous(previous_path)
    start, end = window["start"], window["end"]
    polls = poll_figures(read_polls(trace_dir), start, end)
    calls = read_calls(trace_dir)
    return {
        **idle,
        **window,
        **task_figures(read_tasks(trace_dir), start, end),
        **polls,
        **gap_figures(calls, previous, start, end),
        "seed_seconds": seed_end - seeded,
        "warmup_seconds": start - seed_end,
        "recorded_calls": sum(start <= t <= end for times in calls.values() for t in times),
        "main_celery_per_s": main_redis_rate(read_main_redis(trace_dir), start, end),
        "log": log_counts(log),
        "jobs_in_flight": config.jobs,
        "rps": config.rps,
        "turn": config.turn,
        "period": config.period,
    }


def measure(config: Config, directory: Path) -> dict[str, Any]:
    """One run on a fresh stack; the raw figures (see _drive)."""
    trace_dir = directory / "trace"
    trace_dir.mkdir(parents=True)
    with bench_stack(nodelay=True) as stack:
        env = bench_env(
            stack,
            AKOOL_MAX_RPS=f"{config.rps:g}",
            BENCH_TRACE_DIR=str(trace_dir),
            BENCH_COUNT_ROUNDTRIPS="1",
        )
        with running_worker(stack, env, app="bench.instrumented_app", name="budget") as proc:
            return _drive(config, stack, env, proc, trace_dir)
