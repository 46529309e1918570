"""Engine overhead — end-to-end jobs per second against a bare chain.

The pipeline runs real jobs (`submit_lipsync`) against an instant simulator
(`sim_polls=0`: done at the first poll) with 100 KB videos (one PUT), on the Procfile's
worker. The reference is a chain of three no-op tasks (`bench.noop_app`) on the same Redis
settings, worker command and `celery_config`. Each side: a warm-up, then N enqueued in a
burst from another process; the rate is N / (last completion - first enqueue). The runs
themselves are in bench/engine_runs.py.

The timed runs are not instrumented. Redis round trips are counted in runs of their own
(bench/roundtrips.py: bench/trace.py with BENCH_TRACE_STEPS=1): the service's by step and
command, Celery's in the tasks and in the worker's main process. Where a job's worker CPU
goes comes from a py-spy profile of the pipeline worker, its samples sorted into categories
(bench/cpu_categories.py) and scaled to the timed run's CPU per job.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench import engine_runs as runner
from bench import profiling
from bench.common import Deadline, Section, each, fmt, verdict
from bench.cpu_categories import CELERY_MAIN, CELERY_POOL, OUR_REDIS, cpu_shares, cpu_text
from bench.engine_runs import CONCURRENCY, SERVERS
from bench.roundtrips import PIPELINE_STEPS, RoundTrips, per, roundtrip_text

GOAL = 0.5


@dataclass(frozen=True)
class Size:
    """Jobs (or chains) in each run, and the warm-up before each burst."""

    count: int  # pipeline jobs, timed (and with results stored)
    bare_count: int  # bare chains, timed (and with results stored)
    stock_count: int  # pipeline jobs against stock moto
    count_jobs: int  # jobs, and chains, in the counted runs
    profile_jobs: int  # jobs run under py-spy after the timed pipeline run (0: none)
    warmup: int


FULL = Size(count=300, bare_count=600, stock_count=100, count_jobs=100, profile_jobs=500, warmup=10)
SMOKE = Size(count=5, bare_count=5, stock_count=0, count_jobs=3, profile_jobs=3, warmup=0)
HEADERS = [
    "what",
    "N",
    "seconds",
    "jobs/s",
    "ratio to bare",
    f"goal >= {GOAL}",
    "worker CPU ms/job",
    "Redis / moto / simulator CPU ms/job",
    "machine cores busy",
    "Redis round trips/job: ours + Celery's",
]


def run(*, smoke: bool, work: Path, deadline: Deadline) -> Section:
    """Every run of the engine table (SMOKE at smoke size), then its figures."""
    size = SMOKE if smoke else FULL
    runs, counts, archived, raw = _runs(size, work, smoke)
    pipeline_rt, bare_rt = counts["counted"], counts["bare_counted"]
    shares = cpu_shares(raw) if raw is not None else {}
    section = Section("engine overhead (jobs per second end to end)", smoke=smoke)
    section.raw = _raw(runs, pipeline_rt, bare_rt, shares)
    section.table(["setting", "value"], _settings(size))
    section.table(HEADERS, _rows(runs, counts, smoke))
    enqueued = f"{fmt(runs['pipeline']['enqueue_seconds'], 2)} / "
    jobs = [
        ["pipeline jobs archived (timed run; stock run)", archived],
        [
            "enqueueing, s (pipeline / bare; inside the measured time)",
            enqueued + fmt(runs["bare"]["enqueue_seconds"], 2),
        ],
    ]
    figures = jobs + _roundtrip_figures(section.raw, pipeline_rt, bare_rt)
    section.table(["figure", "value"], figures + _cpu_figures(section.raw))
    section.table(["what 0.5 x bare allows", "value"], _allowed(section.raw))
    title = f"Redis round trips, counted ({size.count_jobs} jobs, {size.count_jobs} chains)"
    section.profiles.append((title, roundtrip_text(pipeline_rt, bare_rt)))
    if shares:
        text = cpu_text(shares, runs["pipeline"], size.profile_jobs)
        section.profiles.append(("Pipeline worker CPU by category", text))
    if raw is not None:
        summary = profiling.summarise(raw, title="pipeline worker", top=15)
        title = f"py-spy: pipeline worker (main process and pool), {size.profile_jobs} jobs"
        section.profiles.append((title, summary))
    _goal(section)
    return section


def _runs(
    size: Size, work: Path, smoke: bool
) -> tuple[dict[str, dict[str, Any]], dict[str, RoundTrips], str, Path | None]:
    """Every run (side by side at smoke size, SMOKE_LEFT_OUT left out): their figures, the
    round trips of the counted ones, how many jobs were archived, the py-spy raw file."""
    count, warmup = size.count, size.warmup
    calls: dict[str, Callable[[], Any]] = {
        "pipeline": partial(runner.pipeline, work, count, warmup, profile_count=size.profile_jobs),
        "bare": partial(runner.bare, size.bare_count, warmup),
        "counted": partial(runner.counted, work, "pipeline", size.count_jobs, warmup),
        "bare_counted": partial(runner.counted, work, "bare", size.count_jobs, warmup),
        "stored": partial(runner.pipeline, work, count, warmup, store_results=True),
        "bare_stored": partial(runner.bare, size.bare_count, warmup, store_results=True),
        "stock": partial(runner.pipeline, work, size.stock_count, warmup, nodelay=False),
    }
    for name in SMOKE_LEFT_OUT if smoke else ():
        del calls[name]
    done: dict[str, Any] = dict(
        zip(calls, each(list(calls.values()), side_by_side=smoke), strict=True)
    )
    runs = {name: done[name] for name in ("bare", "bare_stored") if name in done}
    runs["pipeline"], archived, raw = done["pipeline"]
    runs["counted"], pipeline_rt = done["counted"]
    runs["bare_counted"], bare_rt = done["bare_counted"]
    archived_of = f"{archived} of {count}"
    if "stock" in done:
        runs["stock"], stock_archived, _ = done["stock"]
        runs["stored"] = done["stored"][0]
        archived_of += f"; {stock_archived} of {size.stock_count}"
    return runs, {"counted": pipeline_rt, "bare_counted": bare_rt}, archived_of, raw


def _settings(size: Size) -> list[list[str]]:
    return [
        ["worker", f"Procfile command, --concurrency {CONCURRENCY}, AKOOL_MAX_RPS=1000"],
        ["pipeline job", "submit_lipsync, sim_polls=0, sim_size=102400 (one poll, one PUT)"],
        ["bare chain", "three no-op tasks (bench.noop_app), same celery_config and queues"],
        ["warm-up before each burst, jobs or chains", str(size.warmup)],
        [
            "counted runs (bench/trace.py steps mode), jobs / chains",
            f"{size.count_jobs} / {size.count_jobs}",
        ],
        ["jobs profiled with py-spy after the timed run", str(size.profile_jobs)],
        ["machine cores", str(os.cpu_count())],
    ]


# The engine table, in order: a run, what it is, the run its rate is compared with, and what
# the ratio is (the goal's pair first).
ROWS = (
    ("pipeline", "pipeline (submit -> poll -> archive)", "bare", ""),
    ("bare", "bare chain of 3 no-op tasks", "", ""),
    (
        "counted",
        "pipeline, round trips counted (bench.instrumented_app, BENCH_TRACE_STEPS=1)",
        "bare_counted",
        "(vs bare, counted)",
    ),
    ("bare_counted", "bare chain, round trips counted", "", ""),
    (
        "stored",
        "pipeline, results stored (task_ignore_result off, as before)",
        "bare_stored",
        "(vs bare, results stored)",
    ),
    ("bare_stored", "bare chain, results stored", "", ""),
    ("stock", "pipeline, stock moto (Nagle on) and the simulator as shipped", "bare", ""),
)
# Runs left out at smoke size: the same code as the others but for a setting.
SMOKE_LEFT_OUT = ("stored", "bare_stored", "stock")


def _rows(
    runs: Mapping[str, dict[str, Any]],
    counts: Mapping[str, RoundTrips],
    smoke: bool,
) -> list[list[str]]:
    """The engine table: what ran, how many, how long, how fast, its ratio to its bare
    chain, its CPU (the worker's and the servers') and its round trips when counted."""
    rows = []
    for name, label, reference, compared in ROWS:
        run = runs.get(name)
        if run is None:
            rows.append([label, "not run at smoke size", *[""] * 8])
            continue
        ratio = run["rate"] / runs[reference]["rate"] if reference else 1.0
        if name == "pipeline":
            compared = verdict(ratio >= GOAL, smoke=smoke)
        servers = " / ".join(fmt(run["server_ms"].get(n, float("nan")), 1) for n in SERVERS)
        trips = counts.get(name)
        rows.append(
            [
                label,
                str(run["count"]),
                fmt(run["seconds"], 2),
                fmt(run["rate"]),
                fmt(ratio, 2),
                compared,
                fmt(run["cpu_ms"], 1),
                servers,
                f"{fmt(run['busy_cores'], 2)} of {os.cpu_count()}",
                f"{fmt(trips.ours(), 1)} + {fmt(trips.celery(), 1)}" if trips else "",
            ]
        )
    return rows


def _raw(
    runs: Mapping[str, dict[str, Any]],
    pipeline_rt: RoundTrips,
    bare_rt: RoundTrips,
    shares: Mapping[str, float],
) -> dict[str, Any]:
    """The figures the goal row and the tables use (CPU in ms per job, rates per second)."""
    pipeline, bare, counted = runs["pipeline"], runs["bare"], runs["counted"]
    return {
        "pipeline": pipeline["rate"],
        "bare": bare["rate"],
        "ratio": pipeline["rate"] / bare["rate"],
        "target": GOAL * bare["rate"],
        "cores": os.cpu_count() or 1,
        "pipeline_cpu_ms": pipeline["cpu_ms"],
        "pipeline_main_ms": pipeline["main_ms"],
        "bare_cpu_ms": bare["cpu_ms"],
        "pipeline_server_ms": dict(pipeline["server_ms"]),
        "bare_server_ms": dict(bare["server_ms"]),
        "machine_ms": pipeline["cpu_ms"] + sum(pipeline["server_ms"].values()),
        "bare_machine_ms": bare["cpu_ms"] + sum(bare["server_ms"].values()),
        "busy_cores": pipeline["busy_cores"],
        "bare_busy_cores": bare["busy_cores"],
        "counted_cpu_ms": counted["cpu_ms"],
        "counted_pool_cpu_ms": counted["cpu_ms"] - counted["main_ms"],
        "bare_counted_cpu_ms": runs["bare_counted"]["cpu_ms"],
        "counted_rate": counted["rate"],
        "ours_rt": pipeline_rt.ours(),
        "celery_rt": pipeline_rt.celery(),
        "bare_celery_rt": bare_rt.celery(),
        "pool_ms": pipeline_rt.pool_ms(),
        "pool_steps_ms": {
            name.rpartition(".")[2]: 1000 * pipeline_rt.steps[name].seconds / pipeline_rt.jobs
            for name in PIPELINE_STEPS
            if name in pipeline_rt.steps
        },
        "bare_pool_ms": bare_rt.pool_ms(),
        "shares": dict(shares),
        **{name: runs[name]["rate"] for name in SMOKE_LEFT_OUT if name in runs},
    }


def _roundtrip_figures(
    raw: Mapping[str, Any], pipeline: RoundTrips, bare: RoundTrips
) -> list[list[str]]:
    """The counted round trips per job, by where they happen, and what counting cost."""
    steps = ", ".join(
        f"{name.rpartition('.')[2]} {per(pipeline.steps[name].ours, pipeline.jobs)}"
        for name in PIPELINE_STEPS
        if name in pipeline.steps
    )
    in_tasks = sum(s.celery for s in pipeline.steps.values())
    bare_tasks = sum(s.celery for s in bare.steps.values())
    retries = [
        f"{step.states['RETRY']} of {step.runs} {name.rpartition('.')[2]} runs"
        for name, step in pipeline.steps.items()
        if step.states["RETRY"]
    ]
    overhead = raw["counted_cpu_ms"] / raw["pipeline_cpu_ms"] - 1
    bare_overhead = raw["bare_counted_cpu_ms"] / raw["bare_cpu_ms"] - 1
    return [
        [
            "the service's Redis round trips per job, counted (by step; main process)",
            f"{fmt(raw['ours_rt'], 2)} ({steps}; {per(pipeline.main_ours, pipeline.jobs)})",
        ],
        [
            "Celery's per job (in the tasks / in the main process)",
            f"{fmt(raw['celery_rt'], 2)} ({per(in_tasks, pipeline.jobs)} / "
            f"{per(pipeline.main_celery, pipeline.jobs)})",
        ],
        [
            "bare chain, Celery's per chain (in the tasks / in the main process)",
            f"{fmt(raw['bare_celery_rt'], 2)} ({per(bare_tasks, bare.jobs)} / "
            f"{per(bare.main_celery, bare.jobs)})",
        ],
        ["counted task runs that came back as retries (RETRY)", ", ".join(retries) or "none"],
        [
            "worker CPU counting on / timed run, ms per job; per bare chain",
            f"{fmt(raw['counted_cpu_ms'], 1)} / {fmt(raw['pipeline_cpu_ms'], 1)} "
            f"({overhead:+.0%}); {fmt(raw['bare_counted_cpu_ms'], 1)} / "
            f"{fmt(raw['bare_cpu_ms'], 1)} ({bare_overhead:+.0%})",
        ],
    ]


def _cpu_figures(raw: Mapping[str, Any]) -> list[list[str]]:
    """The pipeline worker's CPU per job: Celery's own handling against the work, from the
    profile's shares (none without py-spy)."""
    shares, cpu = raw["shares"], raw["pipeline_cpu_ms"]
    if not shares:
        return [["worker CPU by category", "no profile (py-spy missing)"]]
    celery = (shares[CELERY_MAIN] + shares[CELERY_POOL]) * cpu
    return [
        [
            "Celery's own task handling, worker ms/job (main process: py-spy / /proc; pool)",
            f"{fmt(celery, 1)} ({fmt(shares[CELERY_MAIN] * cpu, 1)} / "
            f"{fmt(raw['pipeline_main_ms'], 1)}; {fmt(shares[CELERY_POOL] * cpu, 1)})",
        ],
        ["the rest of the worker's CPU (the work), ms/job", fmt(cpu - celery, 1)],
        ["a whole bare chain, worker ms", fmt(raw["bare_cpu_ms"], 1)],
        [
            "worker CPU per round trip of the service, ms (its Redis work / its round trips)",
            fmt(shares[OUR_REDIS] * cpu / raw["ours_rt"], 2),
        ],
    ]


def _cut(now: float, allowed: float) -> str:
    return "within it" if now <= allowed else f"a cut of {1 - allowed / now:.0%} needed"


def _allowed(raw: Mapping[str, Any]) -> list[list[str]]:
    """What 0.5 x bare allows a job on this machine (CPU, pool time) against what it takes."""
    target, cores = raw["target"], raw["cores"]
    cpu_allowed, pool_allowed = 1000 * cores / target, 1000 * CONCURRENCY / target
    servers = " + ".join(f"{n} {fmt(ms, 1)}" for n, ms in raw["pipeline_server_ms"].items())
    steps = " / ".join(f"{n} {fmt(ms, 1)}" for n, ms in raw["pool_steps_ms"].items())
    beyond = raw["machine_ms"] - raw["pipeline_cpu_ms"] - sum(raw["bare_server_ms"].values())
    server_ms = raw["pipeline_server_ms"]
    fake = server_ms.get("moto", 0.0) + server_ms.get("simulator", 0.0)
    occupied = raw["pool_ms"] * raw["counted_rate"] / (1000 * CONCURRENCY)
    return [
        ["0.5 x bare, jobs/s (the pipeline's)", f"{fmt(target)} ({fmt(raw['pipeline'])})"],
        [
            "machine cores busy, pipeline / bare",
            f"{fmt(raw['busy_cores'], 2)} / {fmt(raw['bare_busy_cores'], 2)} of {cores}",
        ],
        [
            "CPU per job, worker and servers, ms",
            f"{fmt(raw['machine_ms'], 1)} (worker {fmt(raw['pipeline_cpu_ms'], 1)} + {servers}); "
            f"bare chain {fmt(raw['bare_machine_ms'], 1)}",
        ],
        [
            f"CPU per job 0.5 x bare allows on {cores} cores, ms",
            f"{fmt(cpu_allowed, 1)} ({_cut(raw['machine_ms'], cpu_allowed)})",
        ],
        [
            "servers' CPU per job beyond a bare chain's, ms (moto and the simulator alone; "
            "their share of what 0.5 x allows)",
            f"{fmt(beyond, 1)} ({fmt(fake, 1)}; {fake / cpu_allowed:.0%})",
        ],
        [
            "pool time per job, counted run, ms (by task; on the CPU / off it)",
            f"{fmt(raw['pool_ms'], 1)} ({steps}; {fmt(raw['counted_pool_cpu_ms'], 1)} / "
            f"{fmt(raw['pool_ms'] - raw['counted_pool_cpu_ms'], 1)}); bare chain "
            f"{fmt(raw['bare_pool_ms'], 1)}",
        ],
        [
            f"pool time per job 0.5 x bare allows with --concurrency {CONCURRENCY}, ms",
            f"{fmt(pool_allowed, 1)} ({_cut(raw['pool_ms'], pool_allowed)})",
        ],
        ["pool occupied in the counted run", f"{occupied:.0%}"],
    ]


def _goal(section: Section) -> None:
    raw = section.raw
    section.goal(
        "pipeline >= 0.5 x bare chain",
        f"{fmt(raw['pipeline'])} jobs/s ({fmt(raw['ours_rt'], 1)} + {fmt(raw['celery_rt'], 1)} "
        "Redis round trips per job, the service's + Celery's, counted)",
        f"{fmt(raw['bare'])} chains/s ({fmt(raw['bare_celery_rt'], 1)} round trips, Celery's)",
        raw["ratio"] >= GOAL,
        f"{raw['ratio']:.2f} x",
    )
