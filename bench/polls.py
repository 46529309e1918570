"""Part 2: poll capacity — 1,000 and 10,000 jobs in flight against the simulator.

Each run: a fresh stack (Redis, moto, the simulator with TCP_NODELAY), one worker from the
Procfile's command on `bench.instrumented_app` (the worker's app plus a task_prerun hook
recording each poll's lag = actual start - ETA), then `bench.seed` puts N jobs that stay
"processing" into steady-state polling at the default POLL_INITIAL/POLL_MAX (5 s / 60 s).
After a warm-up (the seeding burst drained from the queue) the window is measured: lag
p50/p99, polls (Akool calls) per job, worker RSS (main process, where Celery holds ETA
tasks, and the whole tree), Redis used_memory above the pre-seed baseline per job.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from bench import profiling
from bench.common import ROOT, MiB, Section, fmt, percentile
from bench.procstat import children, cpu_seconds, tree_rss_bytes
from bench.stack import bench_env, bench_stack, log_tail, worker
from worker import keys
from worker.names import AKOOL_QUEUE
from worker.settings import AKOOL_MAX_RPS

LAG_GOAL = 5.0
REDIS_GOAL = 4096
QUEUE = AKOOL_QUEUE
MEAN_INTERVAL = 45.0  # U(30, 60) with POLL_MAX_SECONDS = 60


@dataclass
class Run:
    label: str
    jobs: int
    window: float
    eta_limit: str = "none"
    warmup_max: float = 45.0
    profile_seconds: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)
    profiles: list[tuple[str, str]] = field(default_factory=list)


def _lags(directory: Path, start: float, end: float) -> list[tuple[float, float]]:
    out = []
    for path in directory.glob("lag-*.txt"):
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                at, lag = float(parts[0]), float(parts[1])
                if start <= at <= end:
                    out.append((at, lag))
    return out


def _overdue(client: redis.Redis, now: float) -> tuple[int, float]:
    """Polls waiting in the Redis queue past their ETA: (how many, the oldest's lateness).

    A starved worker leaves them there, where no task_prerun hook sees them."""
    late, oldest = 0, 0.0
    for raw in client.lrange(QUEUE, 0, 20_000):
        try:
            eta = json.loads(raw).get("headers", {}).get("eta")
        except (ValueError, AttributeError):
            continue
        if isinstance(eta, str):
            behind = now - datetime.fromisoformat(eta).timestamp()
            if behind > 0:
                late += 1
                oldest = max(oldest, behind)
    return late, oldest


def _sample_memory(client: redis.Redis, jobs: int) -> dict[str, float]:
    """Bytes per job of each kind of key (MEMORY USAGE), while the run is live."""
    hashes = []
    for key in client.scan_iter(keys.JOB_PREFIX + "*", count=1000):
        hashes.append(key)
        if len(hashes) >= 50:
            break
    out: dict[str, float] = {}
    if hashes:
        out["job hash"] = statistics.fmean(client.memory_usage(k) or 0 for k in hashes)
    for name, key in (
        (keys.DUE, keys.DUE),
        (keys.JOBS_INDEX, keys.JOBS_INDEX),
        (keys.EXPIRY, keys.EXPIRY),
        ("queue list", QUEUE),
        ("unacked hash", "unacked"),
        ("unacked_index", "unacked_index"),
    ):
        out[name] = (client.memory_usage(key, samples=0) or 0) / jobs
    metas = sum(1 for _ in client.scan_iter("celery-task-meta-*", count=1000))
    out["celery-task-meta keys"] = metas
    if keys:
        out["job hash as listpack"] = _listpack_size(client, keys[0])
    return out


def _listpack_size(client: redis.Redis, key: bytes) -> float:
    """What one job hash would take with `hash-max-listpack-value 1024` (Redis keeps a hash
    whose values are all <= 64 bytes, its default, as a compact listpack; a job's URLs are
    longer, so its hash is a hash table). Measured on a copy, the setting put back after."""
    before = client.config_get("hash-max-listpack-value")["hash-max-listpack-value"]
    copy = "bench:listpack-probe"
    try:
        client.config_set("hash-max-listpack-value", 1024)
        client.hset(copy, mapping=client.hgetall(key))
        return float(client.memory_usage(copy) or 0)
    finally:
        client.delete(copy)
        client.config_set("hash-max-listpack-value", before)


def measure(run: Run) -> Run:
    with bench_stack(nodelay=True) as stack:
        lag_dir = stack.directory / "lags"
        lag_dir.mkdir()
        env = bench_env(stack, BENCH_LAG_DIR=str(lag_dir), BENCH_ETA_TASK_LIMIT=run.eta_limit)
        client = redis.Redis.from_url(env["REDIS_URL"])
        proc = worker(stack, env, app="bench.instrumented_app", name="poller")
        try:
            _measure_live(run, stack, env, client, proc, lag_dir)
        except Exception as e:
            raise RuntimeError(f"{run.label}: {e}\n{log_tail(proc)}") from e
        finally:
            proc.stop()
    return run


def _measure_live(
    run: Run, stack: Any, env: dict[str, str], client: redis.Redis, proc: Any, lag_dir: Path
) -> None:
    assert proc.proc is not None
    pid = proc.proc.pid
    time.sleep(1)
    base_memory = int(client.info("memory")["used_memory"])
    idle_main, idle_tree = tree_rss_bytes(pid)
    seeded_at = time.time()
    seed = subprocess.run(
        [sys.executable, "-m", "bench.seed", str(run.jobs)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if seed.returncode != 0:
        raise RuntimeError(f"bench.seed failed:\n{seed.stderr[-3000:]}")
    seed_end = time.time()
    # Warm-up: the seeding burst reaches the worker; wait until the queue is drained (or
    # the warm-up bound passes: with a binding ETA limit it never is).
    warm_end = time.monotonic() + run.warmup_max
    while time.monotonic() < warm_end and client.llen(QUEUE) > 200:
        time.sleep(0.5)
    time.sleep(3)
    start = time.time()
    polls0 = int(stack.simulator.stats()["polls"])
    procs = [pid, *children(pid)]
    cpu0 = {p: cpu_seconds(p) for p in procs}
    main_rss, tree_rss, backlog, held = [], [], [], []
    end_at = time.monotonic() + run.window
    while time.monotonic() < end_at:
        own, total = tree_rss_bytes(pid)
        main_rss.append(own)
        tree_rss.append(total)
        backlog.append(int(client.llen(QUEUE)))
        held.append(int(client.hlen("unacked")))
        time.sleep(1)
    end = time.time()
    overdue, oldest = _overdue(client, end)
    polls = int(stack.simulator.stats()["polls"]) - polls0
    cpu = sum(cpu_seconds(p) - cpu0[p] for p in procs)
    used = int(client.info("memory")["used_memory"])
    breakdown = _sample_memory(client, run.jobs)
    if run.profile_seconds:
        run.profiles = _profile(pid, run, lag_dir.parent)
    window_lags = [lag for _, lag in _lags(lag_dir, start, end)]
    startup_lags = [lag for _, lag in _lags(lag_dir, seeded_at, start)]
    seconds = end - start
    run.figures = {
        "seed_seconds": seed_end - seeded_at,
        "warmup_seconds": start - seed_end,
        "seconds": seconds,
        "polls": polls,
        "poll_rate": polls / seconds,
        "expected_rate": run.jobs / MEAN_INTERVAL,
        "lag_p50": percentile(window_lags, 50),
        "lag_p99": percentile(window_lags, 99),
        "lag_max": max(window_lags) if window_lags else math.nan,
        "lag_count": len(window_lags),
        "overdue": overdue,
        "overdue_oldest": oldest,
        "startup_p99": percentile(startup_lags, 99),
        "startup_max": max(startup_lags) if startup_lags else math.nan,
        "calls_per_job_min": polls / run.jobs / (seconds / 60),
        "idle_main": idle_main,
        "idle_tree": idle_tree,
        "main_max": max(main_rss),
        "main_end": main_rss[-1],
        "tree_max": max(tree_rss),
        "redis_per_job": (used - base_memory) / run.jobs,
        "breakdown": breakdown,
        "backlog_max": max(backlog),
        "held_min": min(held),
        "held_max": max(held),
        "held_end": held[-1],
        "cpu_cores": cpu / seconds,
        "cpu_ms_per_poll": 1000 * cpu / max(polls, 1),
    }


def _profile(pid: int, run: Run, directory: Path) -> list[tuple[str, str]]:
    """py-spy on the worker (main process and pool children) after the measured window."""
    raw = directory / "polls.raw"
    spy = profiling.record(pid, run.profile_seconds + 10, raw, subprocesses=True, rate=50)
    if spy is None:
        return [("profile", "py-spy is not installed: pip install py-spy")]
    time.sleep(run.profile_seconds)
    profiling.stop(spy)
    in_child = "Worker.workloop"
    title = f"{run.jobs:,} jobs in flight, {run.profile_seconds:g} s after the window"
    return [
        (
            f"py-spy: worker main process (consumer: fetch, ETA timers, acks), {title}",
            profiling.summarise(raw, title="main", select=lambda s: in_child not in s),
        ),
        (
            f"py-spy: worker pool children (the poll tasks), {title}",
            profiling.summarise(raw, title="children", select=lambda s: in_child in s),
        ),
    ]


def run(directory: Path, runs: list[Run]) -> Section:
    started = time.monotonic()
    section = Section("2. Poll capacity (jobs in flight)")
    for item in runs:
        measure(item)
    section.intro = (
        "Procfile worker (prefork, --concurrency 2), default POLL_INITIAL_SECONDS=5 / "
        "POLL_MAX_SECONDS=60, AKOOL_MAX_RPS=1000, simulator and moto with TCP_NODELAY (see "
        "part 3). Jobs are seeded straight into steady state (poll interval at its cap, "
        "first countdowns drawn from the steady-state residual), so the worker carries "
        "N / 45 polls a second from the start. Lag = poll start - its ETA (task_prerun "
        "hook of bench.instrumented_app). Window figures are after a warm-up in which the "
        "seeding burst drains; 'start-up' is the lag while a worker takes on all N at once "
        "(what a restart with N jobs in flight looks like). Redis per job = used_memory "
        "above the pre-seed baseline / N."
    )
    section.headers = [
        "jobs",
        "worker_eta_task_limit",
        "window s",
        "polls/s (intended)",
        "lag p50 / p99 / max s",
        "overdue in Redis at end (oldest s)",
        "start-up lag p99 / max s",
        "Akool calls per job per min",
        "worker main RSS MiB (idle -> max)",
        "worker tree RSS MiB max",
        "Redis B/job",
        "worker CPU ms/poll (cores)",
    ]
    for item in runs:
        f = item.figures
        section.rows.append(
            [
                f"{item.jobs:,}",
                item.eta_limit,
                fmt(f["seconds"], 0),
                f"{fmt(f['poll_rate'])} ({fmt(f['expected_rate'])})",
                f"{fmt(f['lag_p50'], 3)} / {fmt(f['lag_p99'], 2)} / {fmt(f['lag_max'], 2)}",
                f"{f['overdue']:,} ({fmt(f['overdue_oldest'], 1)})",
                f"{fmt(f['startup_p99'], 2)} / {fmt(f['startup_max'], 2)}",
                fmt(f["calls_per_job_min"], 2),
                f"{fmt(f['idle_main'] / MiB, 0)} -> {fmt(f['main_max'] / MiB, 0)}",
                fmt(f["tree_max"] / MiB, 0),
                fmt(f["redis_per_job"], 0),
                f"{fmt(f['cpu_ms_per_poll'], 1)} ({fmt(f['cpu_cores'], 2)})",
            ]
        )
    _notes(section, runs)
    for item in runs:
        section.profiles += item.profiles
    section.raw = {item.label: item.figures for item in runs}
    section.seconds = time.monotonic() - started
    return section


def _notes(section: Section, runs: list[Run]) -> None:
    unlimited = [r for r in runs if r.eta_limit == "none"]
    for item in unlimited:
        f = item.figures
        lag_gap = f["lag_p99"] - LAG_GOAL
        mem_gap = f["redis_per_job"] - REDIS_GOAL
        lag_verdict = "met" if lag_gap <= 0 else f"missed by {fmt(lag_gap, 2)} s"
        mem_verdict = "met" if mem_gap < 0 else f"missed by {fmt(mem_gap, 0)} B"
        per_task = (f["main_max"] - f["idle_main"]) / item.jobs
        section.notes.append(
            f"{item.jobs:,} jobs, no ETA limit: lag p99 {fmt(f['lag_p99'], 2)} s ({lag_verdict}; "
            f"goal <= 5 s); Redis {fmt(f['redis_per_job'], 0)} B/job ({mem_verdict}; goal "
            f"< 4 KB); the main process holds every waiting poll: {fmt(per_task / 1024, 1)} KiB "
            "each above idle (celery#2218), so its memory grows with the jobs in flight "
            "instead of staying bounded."
        )
        breakdown = f["breakdown"]
        parts = ", ".join(
            f"{name} {fmt(value, 0)}"
            for name, value in breakdown.items()
            if name not in ("celery-task-meta keys", "job hash as listpack")
        )
        listpack = breakdown.get("job hash as listpack", math.nan)
        section.notes.append(
            f"Redis bytes per job at {item.jobs:,} (MEMORY USAGE, live): {parts}; "
            f"celery-task-meta keys: {breakdown.get('celery-task-meta keys', 0):,}. The job "
            f"hash would take {fmt(listpack, 0)} B instead with Redis's "
            "hash-max-listpack-value raised to 1024 (its URLs exceed the default 64)."
        )
    for item in runs:
        if item.eta_limit == "none":
            continue
        f = item.figures
        section.notes.append(
            f"{item.jobs:,} jobs with worker_eta_task_limit={item.eta_limit}: memory is "
            f"capped (main {fmt(f['main_max'] / MiB, 0)} MiB) but the worker starves: it ran "
            f"{fmt(f['poll_rate'])} polls/s of the {fmt(f['expected_rate'])} needed; the "
            f"messages it held fell to {f['held_end']:,} (between {f['held_min']:,} and "
            f"{f['held_max']:,} during the window) while up to {f['backlog_max']:,} waited in "
            f"Redis; at the end {f['overdue']:,} polls there were past their ETA, the oldest "
            f"by {fmt(f['overdue_oldest'], 0)} s (the lag columns only see the polls that did "
            "run). Cause (kombu 5.6.2, kombu/common.py QoS): increment_eventually clamps the "
            "prefetch count at the limit and drops the excess, but apply_eta_task calls "
            "decrement_eventually for every ETA task it runs, so once the limit binds every "
            "poll lowers the prefetch budget for good, down to 1."
        )
    budget = AKOOL_MAX_RPS * MEAN_INTERVAL
    section.notes.append(
        f"With the default AKOOL_MAX_RPS={AKOOL_MAX_RPS:g} (the runs above use 1000): the "
        f"fleet's budget allows {AKOOL_MAX_RPS:g} polls/s, enough to poll about "
        f"{budget:,.0f} jobs at the POLL_MAX_SECONDS pace (one poll per ~{MEAN_INTERVAL:g} s "
        f"each). 1,000 jobs need {1000 / MEAN_INTERVAL:.0f} polls/s and 10,000 need "
        f"{10000 / MEAN_INTERVAL:.0f}/s; at 5/s each of 10,000 jobs is polled about every "
        f"{10000 / AKOOL_MAX_RPS:,.0f} s ({10000 / AKOOL_MAX_RPS / 60:.0f} min), so a finished "
        "video is noticed up to that late; each poll then waits for its reserved slot of the "
        "budget as its countdown, one task run per Akool call (part 8). Polling 10,000 jobs a "
        "minute apart takes 167 requests/s, not 5: size AKOOL_MAX_RPS >= jobs in flight / "
        "45 s within what Akool allows, or accept the longer interval."
    )
    for item in unlimited:
        f = item.figures
        if item.jobs >= 10_000:
            section.notes.append(
                f"Start-up at {item.jobs:,}: the worker takes on all {item.jobs:,} messages at "
                f"once (as after a restart); it fetches one message per event-loop turn, so "
                f"polls due in the first seconds start late (p99 {fmt(f['startup_p99'], 1)} s, "
                f"max {fmt(f['startup_max'], 1)} s) until the backlog has drained "
                f"({fmt(f['warmup_seconds'], 0)} s after the seeding ended)."
            )
