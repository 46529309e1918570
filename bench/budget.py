"""Part 8: the fleet at Akool's request budget — 10,000 jobs in flight, AKOOL_MAX_RPS=5.

With B calls a second for the whole fleet and N jobs still processing at Akool, each job can
be polled only every N / B seconds (2,000 s at the defaults). A poll the budget cannot serve
now is given a reserved slot, and its task comes back at that slot; under load each Akool
call should then cost about one Celery task run, the worker should stay nearly idle, and no
job should wait much longer than N / B between two polls.

One run: a fresh stack (Redis, moto, the simulator with no rate limit), one worker from the
Procfile's command on `bench.instrumented_app` with AKOOL_MAX_RPS=B and the default poll
settings, recording to files (bench/trace.py) every task run, every status call sent to
Akool and every poll's outcome and Redis round trips. The worker's idle CPU is measured
first; then `bench.seed` puts N jobs that stay "processing" straight into steady-state
polling (all due within POLL_MAX_SECONDS), and the run goes on for about 2 x N / B: the
first polls queue for their slots over N / B seconds, the second ones take another N / B.
The window of the rate and CPU figures starts once every seeded poll has run once.

Sizes come from the environment: BENCH_BUDGET_JOBS (N, default 10,000), BENCH_BUDGET_RPS
(B, default 5), BENCH_BUDGET_SECONDS (the run after seeding, default 2 x N / B + 2 x
POLL_MAX_SECONDS), BENCH_BUDGET_IDLE_SECONDS (default 60).
"""

from __future__ import annotations

import itertools
import os
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench.common import ROOT, MiB, Section, fmt, percentile
from bench.procstat import cpu_seconds, rss_bytes, tree_cpu_seconds, tree_pids
from bench.stack import bench_env, bench_stack, log_tail, worker
from worker import keys
from worker.dev.stack import Process, Stack
from worker.ratelimit import poll_period

JOBS = 10_000
RPS = 5.0
IDLE_SECONDS = 60.0
# bench_env's POLL_MAX_SECONDS: every seeded job is due within it.
POLL_MAX_SECONDS = 60.0
# After the seeding, the window starts once every seeded poll has run (and this much more).
WARMUP_MARGIN_SECONDS = 15.0
SAMPLE_SECONDS = 5.0
PROGRESS_SECONDS = 300.0
# Seconds to seed a job (a submit to the simulator, a record, a message), for the estimate.
SEED_SECONDS_PER_JOB = 0.006
# The goals.
TASKS_PER_CALL_GOAL = 1.2
CPU_GOAL_CORES = 0.15
GAP_GOAL_TURNS = 1.2
ROUNDTRIPS_GOAL = 4.0
# Worker log lines worth counting (substring -> label).
LOG_PATTERNS = {
    "another poll loop owns this job": "another poll loop owns the job",
    "request budget spent": "budget spent (a slot reserved for later, or refused)",
    "WARNING": "WARNING lines",
    "ERROR": "ERROR lines",
    "Traceback": "tracebacks",
}


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


# --- Reading the records -------------------------------------------------------------------


def _records(directory: Path, kind: str) -> Iterator[list[str]]:
    """The split lines of every process's file of `kind`."""
    for path in sorted(directory.glob(f"{kind}-*.txt")):
        for line in path.read_text().splitlines():
            parts = line.split()
            if parts:
                yield parts


def read_tasks(directory: Path) -> list[tuple[float, str]]:
    """Every task run: (start epoch, task name)."""
    return [(float(p[0]), p[1]) for p in _records(directory, "tasks") if len(p) == 2]


def read_calls(directory: Path) -> dict[str, list[float]]:
    """Epochs of the status calls sent to Akool, by Akool id, in order."""
    calls: dict[str, list[float]] = {}
    for parts in _records(directory, "calls"):
        if len(parts) == 2:
            calls.setdefault(parts[1], []).append(float(parts[0]))
    return {akool_id: sorted(times) for akool_id, times in calls.items()}


def read_polls(directory: Path) -> list[PollRun]:
    """Every poll task run (task_postrun)."""
    out = []
    for p in _records(directory, "polls"):
        if len(p) == 8:
            reserved = float(p[3])
            slot = reserved if reserved >= 0 else None
            start, end, ours, celery = float(p[0]), float(p[1]), int(p[5]), int(p[6])
            out.append(PollRun(start, end, p[2], slot, p[4], ours, celery, p[7]))
    return out


def read_main_redis(directory: Path) -> list[tuple[float, int, int]]:
    """The main process's round trips so far, sampled: (epoch, ours, Celery's)."""
    rows = [
        (float(p[0]), int(p[1]), int(p[2])) for p in _records(directory, "redis") if len(p) == 3
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


# --- Figures -------------------------------------------------------------------------------


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


# --- The run -------------------------------------------------------------------------------


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


def _seed(env: dict[str, str], jobs: int, previous: Path) -> tuple[float, float]:
    """bench.seed with N jobs; (start, end) epochs."""
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "bench.seed", str(jobs)],
        env={**env, "BENCH_SEED_PREVIOUS": str(previous)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=max(300.0, jobs * SEED_SECONDS_PER_JOB * 10),
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.seed failed:\n{done.stderr[-3000:]}")
    return started, time.time()


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
                f"bench: part 8: {label}, {fmt(epoch - time.time(), 0)} s left, "
                f"{calls:,} Akool calls so far",
                flush=True,
            )


def _window(
    config: Config, stack: Stack, client: redis.Redis, pid: int, end: float
) -> dict[str, Any]:
    """Sample the worker and the budget until `end`; the window's counters and samples."""
    start, sim0, pids0 = time.time(), stack.simulator.stats(), tree_pids(pid)
    cpu0 = {p: cpu_seconds(p) for p in pids0}
    main_rss, ahead, rates = [], [], []
    next_report = time.time() + PROGRESS_SECONDS
    while time.time() < end:
        main_rss.append(rss_bytes(pid))
        queue, rate = _budget_state(client, config.rps)
        ahead.append(queue)
        rates.append(rate)
        if time.time() >= next_report:
            next_report += PROGRESS_SECONDS
            print(
                f"bench: part 8: window, {fmt(end - time.time(), 0)} s left, budget queue "
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
    time.sleep(2)
    idle = _idle(pid, config.idle_seconds)
    previous_path = trace_dir.parent / "previous.txt"
    seeded, seed_end = _seed(env, config.jobs, previous_path)
    print(
        f"bench: part 8: seeded {config.jobs:,} jobs in {fmt(seed_end - seeded, 0)} s", flush=True
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
        proc = worker(stack, env, app="bench.instrumented_app", name="budget")
        try:
            return _drive(config, stack, env, proc, trace_dir)
        except Exception as e:
            raise RuntimeError(f"part 8: {e}\n{log_tail(proc)}") from e
        finally:
            proc.stop()


def run(work: Path, config: Config | None = None) -> Section:
    """Part 8 as a report section (sizes from the environment unless given)."""
    started = time.monotonic()
    config = config or Config.from_env()
    raw = measure(config, work)
    section = _section(config, raw)
    section.seconds = time.monotonic() - started
    return section


# --- The report ----------------------------------------------------------------------------


def _derived(raw: Mapping[str, Any]) -> dict[str, float]:
    """Rates and ratios of the window."""
    seconds = raw["seconds"]
    calls_per_s = raw["calls"] / seconds
    cores = raw["cpu_seconds"] / seconds
    return {
        "calls_per_s": calls_per_s,
        "tasks_per_call": raw["tasks_per_s"] / calls_per_s if calls_per_s else float("inf"),
        "cores": cores,
        "beyond_idle": cores - raw["idle_cores"],
        "polls_per_s": raw["poll_runs"] / seconds,
    }


def _section(config: Config, raw: dict[str, Any]) -> Section:
    d = _derived(raw)
    n, b = f"{config.jobs:,}", f"{config.rps:g}"
    section = Section(
        title=f"8. The fleet at its request budget ({n} jobs in flight, AKOOL_MAX_RPS={b})",
        intro=(
            f"One Procfile worker (prefork, --concurrency 2) on bench.instrumented_app, "
            f"AKOOL_MAX_RPS={b}, POLL_INITIAL_SECONDS=5 / POLL_MAX_SECONDS=60, the simulator "
            f"with no rate limit. The worker's idle CPU was measured for "
            f"{fmt(raw['idle_seconds'], 0)} s, then bench.seed put {n} jobs that stay "
            f"'processing' straight into steady-state polling (all due within 60 s; seeding "
            f"took {fmt(raw['seed_seconds'], 0)} s). N / B = {fmt(config.turn, 0)} s is how "
            "often the budget lets each job be polled. The window (rates, CPU, outcomes, "
            f"round trips) ran from {fmt(raw['warmup_seconds'], 0)} s after the seeding, once "
            f"every seeded poll had run, for {fmt(raw['seconds'], 0)} s; gaps cover the whole "
            "run (those opened in the window are the steady state's). Akool calls = requests "
            "the simulator received on Akool's endpoints; tasks = every task the worker ran "
            "(task_prerun); a gap = the time between two status calls of one job (recorded "
            "where AkoolClient.status returned), the first gap counted from the seeded "
            "previous poll. A poll task's outcome: sent (Akool was asked), slot (the budget "
            "reserved a later slot, the task comes back then: a run without a call), refused "
            "(no slot within the budget's horizon: also without a call), none (no status call "
            "at all). Round trips = redis-py requests (send_packed_command: a command, a "
            "pipeline, an EVALSHA, a health-check PING) of the service's own client in one poll "
            "task; Celery's (kombu's) are counted apart. The recording costs about 0.006 core "
            "at 5 calls/s (measured with and without it)."
        ),
        headers=["measure", "value"],
        rows=_rows(raw, d),
        raw={**raw, **d},
    )
    section.notes = _notes(raw)
    return section


def _rows(raw: Mapping[str, Any], d: Mapping[str, float]) -> list[list[str]]:
    turn = raw["turn"]
    outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(raw["outcomes"].items()))
    on_slot = ", ".join(f"{k} {v:,}" for k, v in sorted(raw["on_slot"].items())) or "none"
    by_name = ", ".join(f"{k} {v:,}" for k, v in sorted(raw["by_name"].items()))
    rt_by = ", ".join(f"{k} {fmt(v, 2)}" for k, v in sorted(raw["rt_by_outcome"].items()))
    main_per_poll = raw["main_celery_per_s"] / d["polls_per_s"] if d["polls_per_s"] else 0.0
    return [
        ["Akool calls/s (simulator)", f"{fmt(d['calls_per_s'], 2)} ({raw['calls']:,} calls)"],
        ["tasks/s (all names)", f"{fmt(raw['tasks_per_s'], 2)} ({by_name})"],
        ["tasks per Akool call", fmt(d["tasks_per_call"], 2)],
        ["poll task runs by outcome", outcomes],
        ["  of which came back on a reserved slot", on_slot],
        [
            "start on the reserved slot - the slot, s (p50 / p99 / max)",
            f"{fmt(raw['slot_late_p50'], 3)} / {fmt(raw['slot_late_p99'], 3)} / "
            f"{fmt(raw['slot_late_max'], 3)}",
        ],
        [
            "worker CPU, cores (window / idle / beyond idle; window in the main process)",
            f"{fmt(d['cores'], 3)} / {fmt(raw['idle_cores'], 3)} / {fmt(d['beyond_idle'], 3)}; "
            f"{fmt(raw['cpu_main_seconds'] / raw['seconds'], 3)}",
        ],
        [
            "worker main RSS MiB (idle -> max, end)",
            f"{fmt(raw['idle_main_rss'] / MiB, 0)} -> {fmt(raw['main_rss_max'] / MiB, 0)}, "
            f"{fmt(raw['main_rss_end'] / MiB, 0)}",
        ],
        [
            "jobs polled at least twice (never polled)",
            f"{raw['polled_twice']:,} of {raw['jobs']:,} ({raw['never_polled']:,})",
        ],
        [
            f"gap between polls of a job, s (p50 / p99 / max; N / B = {fmt(turn, 0)})",
            f"{fmt(raw['gap_p50'], 1)} / {fmt(raw['gap_p99'], 1)} / {fmt(raw['gap_max'], 1)} "
            f"({raw['gaps']:,} gaps)",
        ],
        [
            "  of which opened in the window (steady state), s (p99 / max)",
            f"{fmt(raw['steady_p99'], 1)} / {fmt(raw['steady_max'], 1)} "
            f"({raw['steady_gaps']:,} gaps)",
        ],
        [
            "first gap (seeded previous poll -> first poll), s (p50 / max)",
            f"{fmt(raw['first_p50'], 1)} / {fmt(raw['first_max'], 1)}",
        ],
        ["longest wait since the last poll at the end, s", fmt(raw["open_max"], 1)],
        [
            "budget queue ahead, s (p50 / max); lowest rate",
            f"{fmt(raw['queue_ahead_p50'], 0)} / {fmt(raw['queue_ahead_max'], 0)}; "
            f"{fmt(raw['rate_min'], 2)}/s",
        ],
        ["1005 answers (whole run)", f"{raw['rate_limited_total']:,}"],
        [
            "Redis round trips per poll task, ours less health-check PINGs (mean / p99 / max)",
            f"{fmt(raw['rt_mean'], 2)} / {fmt(raw['rt_p99'], 0)} / {fmt(raw['rt_max'], 0)} "
            f"(by outcome: {rt_by})",
        ],
        [
            "Redis round trips per poll task, Celery's own (pool process mean / max; main "
            "process per poll)",
            f"{fmt(raw['celery_mean'], 2)} / {raw['celery_max']}; {fmt(main_per_poll, 2)}",
        ],
    ]


def _notes(raw: Mapping[str, Any]) -> list[str]:
    notes = []
    histogram = ", ".join(f"{k}: {v:,}" for k, v in raw["rt_histogram"].items())
    notes.append(f"Poll tasks by our Redis round trips (round trips: tasks): {histogram}.")
    sequences = "; ".join(f"{seq} ({count:,})" for seq, count in raw["rt_sequences"])
    notes.append(f"Our Redis requests in a poll task, most common sequences: {sequences}.")
    states = ", ".join(f"{k} {v:,}" for k, v in sorted(raw["states"].items()))
    notes.append(f"Poll tasks by Celery state: {states}.")
    logged = ", ".join(f"{k} {v:,}" for k, v in raw["log"].items())
    notes.append(f"Worker log, whole run: {logged}.")
    if raw["recorded_calls"] != raw["status_calls"]:
        notes.append(
            f"The worker recorded {raw['recorded_calls']:,} status calls in the window, the "
            f"simulator counted {raw['status_calls']:,} (calls in flight at the window's ends)."
        )
    if raw["pids_changed"]:
        notes.append("A pool process was replaced during the window: its CPU is not counted.")
    return notes


def summary_rows(raw: Mapping[str, Any]) -> list[list[str]]:
    """The goal rows of part 8 for the Goals table."""
    n, b = f"{raw['jobs_in_flight']:,}", f"{raw['rps']:g}"
    calls, tasks, ratio = raw["calls_per_s"], raw["tasks_per_s"], raw["tasks_per_call"]
    gap_goal, period = _gap_goal(raw)
    gap_bound = GAP_GOAL_TURNS * period
    longest = max(raw["gap_max"], raw["open_max"])
    rt_mean = raw["rt_mean"]
    return [
        [
            f"8. Celery tasks/s <= 1.2 x Akool calls/s ({n} jobs, AKOOL_MAX_RPS={b})",
            f"{fmt(tasks, 2)} tasks/s ({fmt(ratio, 2)} x {fmt(calls, 2)} calls/s)",
            f"{fmt(TASKS_PER_CALL_GOAL * calls, 2)} tasks/s",
            _verdict(ratio <= TASKS_PER_CALL_GOAL, f"{ratio:.2f} x"),
        ],
        [
            f"8. worker CPU beyond idle < 0.15 core ({n} jobs at {b}/s)",
            f"{fmt(raw['beyond_idle'], 3)} core ({fmt(raw['cores'], 3)} - idle "
            f"{fmt(raw['idle_cores'], 3)})",
            f"{CPU_GOAL_CORES} core",
            _verdict(raw["beyond_idle"] < CPU_GOAL_CORES, ""),
        ],
        [
            f"8. longest gap between two polls of a job <= {gap_goal}",
            f"{fmt(raw['gap_max'], 1)} s (p50 {fmt(raw['gap_p50'], 1)}, p99 "
            f"{fmt(raw['gap_p99'], 1)}; steady state max {fmt(raw['steady_max'], 1)}; "
            f"{raw['polled_twice']:,} of {raw['jobs']:,} jobs polled twice or more; longest "
            f"open at the end {fmt(raw['open_max'], 1)} s)",
            f"{fmt(gap_bound, 0)} s",
            _verdict(longest <= gap_bound and raw["gaps"] > 0, f"{longest / period:.2f} x"),
        ],
        [
            "8. at most 4 Redis round trips of the service's own work per poll",
            f"mean {fmt(rt_mean, 2)}, p99 {fmt(raw['rt_p99'], 0)}, max "
            f"{fmt(raw['rt_max'], 0)}, health-check PINGs apart ({raw.get('rt_pings', 0):,} in "
            f"all); Celery's own in the pool process: mean {fmt(raw['celery_mean'], 2)}",
            "4",
            _verdict(raw["rt_max"] <= ROUNDTRIPS_GOAL, "max"),
        ],
    ]


def _gap_goal(raw: Mapping[str, Any]) -> tuple[str, float]:
    """The gap goal's wording and its period: N / B, or the longest backoff when the budget
    does not bind (N / B shorter than POLL_MAX_SECONDS)."""
    n, b, turn, period = raw["jobs_in_flight"], raw["rps"], raw["turn"], raw["period"]
    if period <= turn:
        return f"1.2 x N/B ({n:,} / {b:g} = {fmt(turn, 0)} s)", period
    return (
        f"1.2 x POLL_MAX_SECONDS ({fmt(period, 0)} s: N/B = {n:,} / {b:g} = {fmt(turn, 0)} s "
        "is shorter, the budget does not bind)",
        period,
    )


def _verdict(ok: bool, detail: str) -> str:
    word = "met" if ok else "missed"
    return f"{word} ({detail})" if detail else word
