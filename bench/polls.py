"""Poll capacity — 1,000 and 10,000 jobs in flight against the simulator.

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
import time
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

import redis

from bench import profiling
from bench.common import Deadline, MiB, Section, each, fmt, percentile
from bench.procstat import children, cpu_seconds, tree_rss_bytes
from bench.stack import bench_env, bench_stack, running_worker, seed
from worker.names import AKOOL_QUEUE
from worker.store import keys

LAG_GOAL = 5.0
REDIS_GOAL = 4096
# Worker memory is bounded when its growth at the most jobs in flight stays under this many
# times its growth at the fewest.
BOUNDED_GROWTH = 2.0
QUEUE = AKOOL_QUEUE
MEAN_INTERVAL = 45.0  # U(30, 60) with POLL_MAX_SECONDS = 60
# Seconds the part needs besides its windows: stacks, seeding 10,000 jobs, warm-ups, stops,
# the profile and a margin.
OVERHEAD_SECONDS = 1.0 * 60 + 2 * 55 + 15 + 20


@dataclass
class Run:
    """One run: its jobs in flight, window and settings; its figures and profiles after."""

    label: str
    jobs: int
    window: float
    eta_limit: str = "none"
    warmup_max: float = 45.0
    profile_seconds: float = 0.0
    # After the warm-up, before the window.
    settle: float = 3.0
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
    if hashes:
        out["job hash as listpack"] = _listpack_size(client, hashes[0])
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
        with running_worker(stack, env, app="bench.instrumented_app", name="poller") as proc:
            _measure_live(run, stack, env, client, proc, lag_dir)
    return run


def _measure_live(
    run: Run, stack: Any, env: dict[str, str], client: redis.Redis, proc: Any, lag_dir: Path
) -> None:
    assert proc.proc is not None
    pid = proc.proc.pid
    time.sleep(1)
    base_memory = int(client.info("memory")["used_memory"])
    idle_main, idle_tree = tree_rss_bytes(pid)
    seeded_at, seed_end = seed(env, run.jobs)
    # Warm-up: the seeding burst reaches the worker; wait until the queue is drained (or
    # the warm-up bound passes: with a binding ETA limit it never is).
    warm_end = time.monotonic() + run.warmup_max
    while time.monotonic() < warm_end and client.llen(QUEUE) > 200:
        time.sleep(0.5)
    time.sleep(run.settle)
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


def runs(smoke: bool, deadline: Deadline) -> list[Run]:
    """The runs: two tiny ones at smoke size; otherwise 1,000 and 10,000 jobs, and 10,000 with
    worker_eta_task_limit, their windows shortened to fit what is left of the budget."""
    if smoke:
        return [
            Run("smoke", 20, 1.5, warmup_max=5, settle=0.5, profile_seconds=1),
            Run("smoke-limit", 20, 1.0, "5", warmup_max=2, settle=0.5),
        ]
    windows = {"1k": 40.0, "10k": 60.0, "10k-limit": 35.0}
    spare = deadline.left() - OVERHEAD_SECONDS
    scale = max(0.3, min(1.0, spare / sum(windows.values())))
    return [
        Run("1k", 1_000, windows["1k"] * scale),
        Run("10k", 10_000, windows["10k"] * scale, profile_seconds=15),
        # The limit binds at 10,000 jobs; the queue never drains, so a short warm-up.
        Run("10k-limit", 10_000, windows["10k-limit"] * scale, "2500", warmup_max=10),
    ]


def run(*, smoke: bool, work: Path, deadline: Deadline) -> Section:
    """Every run of `runs`, each on a fresh stack, one after the other (side by side at
    smoke size)."""
    section = Section("poll capacity (jobs in flight)", smoke=smoke)
    done = each([partial(measure, item) for item in runs(smoke, deadline)], side_by_side=smoke)
    section.table(
        [
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
        ],
        [_row(item) for item in done],
    )
    section.table(["figure", *(f"{r.jobs:,}, limit {r.eta_limit}" for r in done)], _figures(done))
    unlimited = [r for r in done if r.eta_limit == "none"]
    section.table(
        ["Redis bytes per job (MEMORY USAGE, live)", *(f"{r.jobs:,} jobs" for r in unlimited)],
        _bytes_by_key(unlimited),
    )
    for item in done:
        section.profiles += item.profiles
    section.raw = {item.label: item.figures for item in done}
    _goals(section, done)
    return section


def _row(item: Run) -> list[str]:
    f = item.figures
    return [
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


def _bytes_by_key(runs: list[Run]) -> list[list[str]]:
    """Bytes per job of each kind of key, one column a run; the job hash as it would be as a
    listpack, and how many celery-task-meta keys there were."""
    kinds = list(runs[0].figures["breakdown"]) if runs else []
    rows = []
    for kind in kinds:
        values = [r.figures["breakdown"].get(kind, math.nan) for r in runs]
        count = kind == "celery-task-meta keys"
        label = (
            "job hash as a listpack (hash-max-listpack-value 1024)" if "listpack" in kind else kind
        )
        rows.append([label, *(f"{v:,.0f}" if count else fmt(v, 0) for v in values)])
    return rows


def _growth(item: Run) -> float:
    """The main process's RSS above idle at its most, per job in flight (bytes)."""
    return (item.figures["main_max"] - item.figures["idle_main"]) / item.jobs


def _figures(done: list[Run]) -> list[list[str]]:
    """Each run's seeding, warm-up and what the worker held, one column a run."""
    rows = {
        "seeding took, s": lambda r: fmt(r.figures["seed_seconds"], 1),
        "backlog drained (window's start), s after the seeding": lambda r: fmt(
            r.figures["warmup_seconds"], 0
        ),
        "main process RSS above idle per job in flight, KiB": lambda r: fmt(_growth(r) / 1024, 1),
        "messages the worker held: at the end (min / max in the window)": lambda r: (
            f"{r.figures['held_end']:,} ({r.figures['held_min']:,} / {r.figures['held_max']:,})"
        ),
        "messages waiting in Redis, max in the window": lambda r: f"{r.figures['backlog_max']:,}",
    }
    return [[label, *(cell(r) for r in done)] for label, cell in rows.items()]


def _goals(section: Section, done: list[Run]) -> None:
    unlimited = sorted((r for r in done if r.eta_limit == "none"), key=lambda r: r.jobs)
    for item in unlimited:
        f, jobs = item.figures, f"{item.jobs:,}"
        section.goal(
            f"poll lag p99 <= 5 s ({jobs} jobs, steady state)",
            f"{fmt(f['lag_p99'], 2)} s (start-up p99 {fmt(f['startup_p99'], 1)} s)",
            f"{LAG_GOAL:g} s",
            f["lag_p99"] <= LAG_GOAL,
        )
        section.goal(
            f"Redis memory per job < 4 KiB ({jobs} jobs)",
            f"{fmt(f['redis_per_job'], 0)} B",
            f"{REDIS_GOAL:,} B",
            f["redis_per_job"] < REDIS_GOAL,
        )
    small, big = unlimited[0], unlimited[-1]
    limited = next((r.figures for r in done if r.eta_limit != "none"), {})
    growth = big.figures["main_max"] - big.figures["idle_main"]
    small_growth = small.figures["main_max"] - small.figures["idle_main"]
    times = growth / small_growth if small_growth > 0 else math.inf
    section.goal(
        f"worker memory bounded ({big.jobs:,} jobs)",
        f"main process {fmt(big.figures['idle_main'] / MiB, 0)} -> "
        f"{fmt(big.figures['main_max'] / MiB, 0)} MiB ({fmt(_growth(big) / 1024, 1)} KiB per "
        f"waiting poll); with worker_eta_task_limit: "
        f"{fmt(limited.get('main_max', math.nan) / MiB, 0)} MiB, "
        f"{fmt(limited.get('poll_rate', math.nan))} of "
        f"{fmt(limited.get('expected_rate', math.nan))} polls/s, polls "
        f"{fmt(limited.get('overdue_oldest', math.nan), 0)} s overdue",
        f"bounded: growth < {BOUNDED_GROWTH:g} x that at {small.jobs:,} jobs",
        times < BOUNDED_GROWTH,
        f"{times:.1f} x",
    )
