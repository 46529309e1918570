"""The fleet at Akool's request budget — 10,000 jobs in flight, AKOOL_MAX_RPS=5.

With B calls a second for the whole fleet and N jobs still processing at Akool, each job can
be polled only every N / B seconds (2,000 s at the defaults). A poll the budget cannot serve
now is given a reserved slot, and its task comes back at that slot; under load each Akool
call should then cost about one Celery task run, the worker should stay nearly idle, and no
job should wait much longer than N / B between two polls.

One run (bench/budget_run.py): a fresh stack (Redis, moto, the simulator with no rate
limit), one worker from the Procfile's command on `bench.instrumented_app` with
AKOOL_MAX_RPS=B and the default poll settings, recording to files (bench/trace.py) every
task run, every status call sent to Akool and every poll's outcome and Redis round trips.
The worker's idle CPU is measured first; then `bench.seed` puts N jobs that stay
"processing" straight into steady-state polling (all due within POLL_MAX_SECONDS), and the
run goes on for about 2 x N / B: the first polls queue for their slots over N / B seconds,
the second ones take another N / B. The window of the rate and CPU figures starts once every
seeded poll has run once.

Sizes come from the environment: BENCH_BUDGET_JOBS (N, default 10,000), BENCH_BUDGET_RPS
(B, default 5), BENCH_BUDGET_SECONDS (the run after seeding, default 2 x N / B + 2 x
POLL_MAX_SECONDS), BENCH_BUDGET_IDLE_SECONDS (default 60); at smoke size SMOKE.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.budget_run import POLL_MAX_SECONDS, Config, measure
from bench.common import Deadline, MiB, Section, fmt

SMOKE = Config(jobs=20, rps=5.0, seconds=6.0, idle_seconds=1.0)
# The goals.
TASKS_PER_CALL_GOAL = 1.2
CPU_GOAL_CORES = 0.15
GAP_GOAL_TURNS = 1.2
ROUNDTRIPS_GOAL = 4.0


def expected_seconds(smoke: bool) -> float:
    """About how long the part takes at its size (`python -m bench` skips it when longer
    than what is left of the budget)."""
    return (SMOKE if smoke else Config.from_env()).expected_seconds()


def run(*, smoke: bool, work: Path, deadline: Deadline) -> Section:
    """One run at the sizes from the environment (SMOKE at smoke size)."""
    config = SMOKE if smoke else Config.from_env()
    raw = measure(config, work)
    raw.update(_derived(raw))
    n, b = f"{config.jobs:,}", f"{config.rps:g}"
    section = Section(
        f"the fleet at its request budget ({n} jobs in flight, AKOOL_MAX_RPS={b})",
        smoke=smoke,
        raw=raw,
    )
    section.table(["setting", "value"], _settings(config, raw))
    section.table(["measure", "value"], _rows(raw) + _counts(raw))
    _goals(section)
    return section


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


def _settings(config: Config, raw: Mapping[str, Any]) -> list[list[str]]:
    return [
        ["worker", "Procfile command (prefork, --concurrency 2), bench.instrumented_app"],
        ["jobs in flight N, staying 'processing' (bench.seed)", f"{config.jobs:,}"],
        ["AKOOL_MAX_RPS B (the simulator without a rate limit)", f"{config.rps:g}"],
        ["POLL_INITIAL_SECONDS / POLL_MAX_SECONDS", f"5 / {POLL_MAX_SECONDS:g}"],
        ["N / B, s", fmt(config.turn, 0)],
        ["worker idle CPU measured for, s", fmt(raw["idle_seconds"], 0)],
        ["seeding took, s", fmt(raw["seed_seconds"], 0)],
        [
            "window: from the seeding's end + s, for s",
            f"{fmt(raw['warmup_seconds'], 0)}, {fmt(raw['seconds'], 0)}",
        ],
    ]


def _rows(raw: Mapping[str, Any]) -> list[list[str]]:
    """The window's rates, outcomes, CPU, memory, gaps, budget queue and round trips."""
    turn = raw["turn"]
    outcomes = ", ".join(f"{k} {v:,}" for k, v in sorted(raw["outcomes"].items()))
    on_slot = ", ".join(f"{k} {v:,}" for k, v in sorted(raw["on_slot"].items())) or "none"
    by_name = ", ".join(f"{k} {v:,}" for k, v in sorted(raw["by_name"].items()))
    rt_by = ", ".join(f"{k} {fmt(v, 2)}" for k, v in sorted(raw["rt_by_outcome"].items()))
    main_per_poll = raw["main_celery_per_s"] / raw["polls_per_s"] if raw["polls_per_s"] else 0.0
    return [
        ["Akool calls/s (simulator)", f"{fmt(raw['calls_per_s'], 2)} ({raw['calls']:,} calls)"],
        ["tasks/s (all names)", f"{fmt(raw['tasks_per_s'], 2)} ({by_name})"],
        ["tasks per Akool call", fmt(raw["tasks_per_call"], 2)],
        ["poll task runs by outcome", outcomes],
        ["  of which came back on a reserved slot", on_slot],
        [
            "start on the reserved slot - the slot, s (p50 / p99 / max)",
            f"{fmt(raw['slot_late_p50'], 3)} / {fmt(raw['slot_late_p99'], 3)} / "
            f"{fmt(raw['slot_late_max'], 3)}",
        ],
        [
            "worker CPU, cores (window / idle / beyond idle; window in the main process)",
            f"{fmt(raw['cores'], 3)} / {fmt(raw['idle_cores'], 3)} / {fmt(raw['beyond_idle'], 3)}; "
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


def _counts(raw: Mapping[str, Any]) -> list[list[str]]:
    """The window's poll tasks counted by round trips, sequence and state; the worker's log."""
    histogram = ", ".join(f"{k}: {v:,}" for k, v in raw["rt_histogram"].items())
    sequences = "; ".join(f"{seq} ({count:,})" for seq, count in raw["rt_sequences"])
    states = ", ".join(f"{k} {v:,}" for k, v in sorted(raw["states"].items()))
    logged = ", ".join(f"{k} {v:,}" for k, v in raw["log"].items())
    return [
        ["poll tasks by our Redis round trips (round trips: tasks)", histogram or "none"],
        ["our Redis requests in a poll task, most common sequences", sequences or "none"],
        ["poll tasks by Celery state", states or "none"],
        ["worker log lines, whole run", logged],
        [
            "status calls in the window, recorded by the worker / counted by the simulator",
            f"{raw['recorded_calls']:,} / {raw['status_calls']:,}",
        ],
        [
            "a pool process replaced in the window (its CPU not counted)",
            "yes" if raw["pids_changed"] else "no",
        ],
    ]


def _goals(section: Section) -> None:
    raw = section.raw
    n, b = f"{raw['jobs_in_flight']:,}", f"{raw['rps']:g}"
    calls, tasks, ratio = raw["calls_per_s"], raw["tasks_per_s"], raw["tasks_per_call"]
    gap_goal, period = _gap_goal(raw)
    gap_bound = GAP_GOAL_TURNS * period
    longest = max(raw["gap_max"], raw["open_max"])
    section.goal(
        f"Celery tasks/s <= 1.2 x Akool calls/s ({n} jobs, AKOOL_MAX_RPS={b})",
        f"{fmt(tasks, 2)} tasks/s ({fmt(ratio, 2)} x {fmt(calls, 2)} calls/s)",
        f"{fmt(TASKS_PER_CALL_GOAL * calls, 2)} tasks/s",
        ratio <= TASKS_PER_CALL_GOAL,
        f"{ratio:.2f} x",
    )
    section.goal(
        f"worker CPU beyond idle < 0.15 core ({n} jobs at {b}/s)",
        f"{fmt(raw['beyond_idle'], 3)} core ({fmt(raw['cores'], 3)} - idle "
        f"{fmt(raw['idle_cores'], 3)})",
        f"{CPU_GOAL_CORES} core",
        raw["beyond_idle"] < CPU_GOAL_CORES,
    )
    section.goal(
        f"longest gap between two polls of a job <= {gap_goal}",
        f"{fmt(raw['gap_max'], 1)} s (p50 {fmt(raw['gap_p50'], 1)}, p99 "
        f"{fmt(raw['gap_p99'], 1)}; steady state max {fmt(raw['steady_max'], 1)}; "
        f"{raw['polled_twice']:,} of {raw['jobs']:,} jobs polled twice or more; longest "
        f"open at the end {fmt(raw['open_max'], 1)} s)",
        f"{fmt(gap_bound, 0)} s",
        longest <= gap_bound and raw["gaps"] > 0,
        f"{longest / period:.2f} x",
    )
    section.goal(
        "at most 4 Redis round trips of the service's own work per poll",
        f"mean {fmt(raw['rt_mean'], 2)}, p99 {fmt(raw['rt_p99'], 0)}, max "
        f"{fmt(raw['rt_max'], 0)}, health-check PINGs apart ({raw.get('rt_pings', 0):,} in "
        f"all); Celery's own in the pool process: mean {fmt(raw['celery_mean'], 2)}",
        "4",
        raw["rt_max"] <= ROUNDTRIPS_GOAL,
        "max",
    )


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
