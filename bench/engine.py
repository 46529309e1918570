"""Part 3: engine overhead — end-to-end jobs per second against a bare chain.

The pipeline runs real jobs (`submit_lipsync`) against an instant simulator
(`sim_polls=0`: done at the first poll) with 100 KB videos (one PUT), on the Procfile's
worker. The reference is a chain of three no-op tasks (`bench.noop_app`) on the same Redis
settings, worker command and `celery_config`. Each side: a warm-up, then N enqueued in a
burst from another process; the rate is N / (last completion - first enqueue).

The timed runs are not instrumented. Redis round trips are counted in runs of their own
(COUNT_JOBS jobs or chains, bench/trace.py with BENCH_TRACE_STEPS=1): the service's by step
and command, Celery's in the tasks and in the worker's main process. Where a job's worker
CPU goes comes from a py-spy profile of the pipeline worker, its samples sorted into
CATEGORIES and scaled to the timed run's CPU per job.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench import profiling
from bench.common import Section, fmt
from bench.procstat import cpu_seconds, tree_cpu_seconds
from bench.stack import bench_env, bench_stack, enqueue, log_tail, wait_for, worker
from worker import keys
from worker.dev.stack import Stack
from worker.names import ARCHIVE_TASK, POLL_TASK, SUBMIT_TASK
from worker.status import JobStatus

VIDEO_URL = "https://videos.example.com/in.mp4?sim_polls=0&sim_size=102400"
WARMUP = 10
GOAL = 0.5
CONCURRENCY = 2
# The counted runs: this many jobs (chains), the worker idle this long before the burst (its
# idle traffic, measured) and after it (the last acknowledgements), in seconds.
COUNT_JOBS = 100
COUNT_IDLE_SECONDS = 1.5
COUNT_SETTLE_SECONDS = 1.0
PROFILE_JOBS = 500
PIPELINE_STEPS = (SUBMIT_TASK, POLL_TASK, ARCHIVE_TASK)
BARE_STEPS = ("bench.noop_first", "bench.noop_second", "bench.noop_third")
MAIN = "worker main process"
# The most common sequences of the service's commands shown for each task.
SEQUENCES_SHOWN = 3


def _pipeline_done(client: redis.Redis, ids: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        # Final jobs leave the due set; every job of this run is in it until then.
        return not any(client.zscore(keys.DUE, i) is not None for i in ids[-50:]) and (
            client.zcard(keys.DUE) == 0
        )

    return check


def _bare_done(client: redis.Redis, ids: list[str]) -> Callable[[], bool]:
    def check() -> bool:
        pipe = client.pipeline(transaction=False)
        for i in ids:
            pipe.exists(f"celery-task-meta-{i}")
        return all(pipe.execute())

    return check


def _pids(stack: Stack, worker_pid: int) -> dict[str, int]:
    """The processes whose CPU a run counts: the worker (with its pool) and the servers."""
    pids = {"worker": worker_pid}
    for name, server in (
        ("redis", stack.redis),
        ("moto", stack.s3),
        ("simulator", stack.simulator),
    ):
        process = getattr(server, "process", None)
        if process is not None and process.proc is not None:
            pids[name] = process.proc.pid
    return pids


def _cpu(pids: Mapping[str, int]) -> dict[str, float]:
    """CPU seconds used so far by each process tree, and by the worker's main process alone
    ("main")."""
    cpu = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
    cpu["main"] = cpu_seconds(pids["worker"])
    return cpu


def _machine_busy() -> float:
    """CPU seconds this machine has been busy (all cores, /proc/stat: not idle or iowait)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _busy_cores(samples: list[tuple[float, float]]) -> float:
    """Cores busy on average between the first and last (epoch, busy seconds) samples: from
    the end of the enqueueing to the last completion; nan with fewer than two."""
    if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
        return float("nan")
    return (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])


def _measure(
    env: dict[str, str],
    kind: str,
    count: int,
    done: Any,
    client: redis.Redis,
    args: list[str],
    pids: Mapping[str, int],
    *,
    idle: float = 0.0,
) -> dict[str, Any]:
    """Warm up, wait `idle` s, enqueue `count` in a burst and wait for the last to finish."""
    warm = enqueue(env, kind, str(WARMUP), *args)
    if wait_for(done(client, warm["ids"]), 60) is None:
        raise RuntimeError(f"{kind} warm-up did not finish in 60 s")
    time.sleep(idle)
    cpu0 = _cpu(pids)
    burst = enqueue(env, kind, str(count), *args)
    check = done(client, burst["ids"])
    busy: list[tuple[float, float]] = []  # (epoch, machine busy seconds) at each check

    def sampled() -> bool:
        busy.append((time.time(), _machine_busy()))
        return bool(check())

    ended = wait_for(sampled, 300)
    if ended is None:
        raise RuntimeError(f"{kind}: {count} did not finish in 300 s")
    cpu = {name: 1000 * (seconds - cpu0[name]) / count for name, seconds in _cpu(pids).items()}
    seconds = ended - burst["started"]
    return {
        "count": count,
        "seconds": seconds,
        "rate": count / seconds,
        "busy_cores": _busy_cores(busy),
        "cpu_ms": cpu.pop("worker"),
        "main_ms": cpu.pop("main"),
        "server_ms": cpu,
        "enqueue_seconds": burst["ended"] - burst["started"],
        "ids": burst["ids"],
        "started": burst["started"],
        "ended": ended,
    }


def _pipeline(
    directory: Path,
    count: int,
    *,
    nodelay: bool,
    profile_count: int = 0,
    store_results: bool = False,
) -> tuple[dict[str, Any], int, Path | None]:
    """Measure `count` jobs; then, if asked, profile `profile_count` more with py-spy (the
    profile's raw file, and its run's CPU per job as result["profile_cpu_ms"])."""
    raw = None
    with bench_stack(nodelay=nodelay) as stack:
        env = bench_env(stack)
        app = "worker.celery_app"
        if store_results:
            env["BENCH_STORE_RESULTS"] = "1"
            app = "bench.instrumented_app"
        client = redis.Redis.from_url(env["REDIS_URL"])
        proc = worker(stack, env, app=app, name="pipeline", concurrency=CONCURRENCY)
        assert proc.proc is not None
        pids = _pids(stack, proc.proc.pid)
        try:
            result = _measure(env, "pipeline", count, _pipeline_done, client, [VIDEO_URL], pids)
            if profile_count:
                raw = _profile(directory, env, client, proc.proc.pid, profile_count, result)
        except Exception as e:
            raise RuntimeError(f"{e}\n{log_tail(proc)}") from e
        finally:
            proc.stop()
        statuses = [client.hget(keys.JOB_PREFIX + i, "status") for i in result["ids"]]
        archived = sum(1 for s in statuses if s == JobStatus.ARCHIVED.encode())
    return result, archived, raw


def _profile(
    directory: Path,
    env: dict[str, str],
    client: redis.Redis,
    pid: int,
    count: int,
    result: dict[str, Any],
) -> Path | None:
    """py-spy on the worker (main process and pool) while `count` more jobs run; the raw
    file, or None without py-spy."""
    raw = directory / "engine-pipeline.raw"
    spy = profiling.record(pid, 90, raw, subprocesses=True)
    if spy is None:
        return None
    time.sleep(0.5)
    cpu0 = tree_cpu_seconds(pid)
    more = enqueue(env, "pipeline", str(count), VIDEO_URL)
    wait_for(_pipeline_done(client, more["ids"]), 120)
    result["profile_cpu_ms"] = 1000 * (tree_cpu_seconds(pid) - cpu0) / count
    profiling.stop(spy)
    return raw


def _bare(count: int, *, store_results: bool = False) -> dict[str, Any]:
    with bench_stack(nodelay=True) as stack:
        env = bench_env(stack)
        if store_results:
            env["BENCH_STORE_RESULTS"] = "1"
        client = redis.Redis.from_url(env["REDIS_URL"])
        proc = worker(stack, env, app="bench.noop_app", name="bare", concurrency=CONCURRENCY)
        assert proc.proc is not None
        try:
            pids = _pids(stack, proc.proc.pid)
            return _measure(env, "bare", count, _bare_done, client, [], pids)
        except Exception as e:
            raise RuntimeError(f"{e}\n{log_tail(proc)}") from e
        finally:
            proc.stop()


# --- Redis round trips, counted (bench/trace.py, BENCH_TRACE_STEPS=1) -----------------------


@dataclass(frozen=True)
class StepRun:
    """One task run, as bench/trace.py recorded it in steps mode."""

    start: float
    end: float
    name: str
    state: str
    ours: int
    celery: int
    commands: tuple[str, ...]
    celery_commands: tuple[str, ...]


@dataclass
class StepCount:
    """The round trips of one task name over a counted run."""

    runs: int = 0
    ours: int = 0
    celery: int = 0
    seconds: float = 0.0
    sequences: Counter[str] = field(default_factory=Counter)
    celery_commands: Counter[str] = field(default_factory=Counter)
    states: Counter[str] = field(default_factory=Counter)


@dataclass
class RoundTrips:
    """A counted run's round trips: by task name, and the main process's in the burst."""

    jobs: int
    steps: dict[str, StepCount]
    main_ours: int
    main_celery: int
    main_commands: Counter[str]
    idle_per_second: float

    def ours(self) -> float:
        """The service's round trips per job, all steps and the main process."""
        return (sum(s.ours for s in self.steps.values()) + self.main_ours) / self.jobs

    def celery(self) -> float:
        """Celery's round trips per job: in the tasks, and in the main process."""
        return (sum(s.celery for s in self.steps.values()) + self.main_celery) / self.jobs

    def pool_ms(self) -> float:
        """Wall time the pool processes spent in tasks, per job (ms)."""
        return 1000 * sum(s.seconds for s in self.steps.values()) / self.jobs


def _lines(directory: Path, kind: str) -> Iterator[list[str]]:
    """The split lines of every process's trace file of `kind`."""
    for path in sorted(directory.glob(f"{kind}-*.txt")):
        for line in path.read_text().splitlines():
            if line.strip():
                yield line.split()


def _names(text: str) -> tuple[str, ...]:
    return () if text == "-" else tuple(text.split(","))


def read_steps(directory: Path) -> list[StepRun]:
    """Every task run of a steps-mode trace."""
    return [
        StepRun(float(p[0]), float(p[1]), p[2], p[3], int(p[4]), int(p[5]), *map(_names, p[6:]))
        for p in _lines(directory, "steps")
        if len(p) == 8
    ]


def count_steps(runs: list[StepRun]) -> dict[str, StepCount]:
    """Round trips and wall time by task name."""
    steps: dict[str, StepCount] = {}
    for run in runs:
        step = steps.setdefault(run.name, StepCount())
        step.runs += 1
        step.ours += run.ours
        step.celery += run.celery
        step.seconds += run.end - run.start
        step.sequences[f"{run.state}: {', '.join(run.commands) or 'none'}"] += 1
        step.celery_commands.update(run.celery_commands)
        step.states[run.state] += 1
    return steps


def read_roundtrips(directory: Path, started: float, ended: float, jobs: int) -> RoundTrips:
    """The round trips of the burst that started at `started` and was done at `ended`: task
    runs that started in it, and the main process's counts between the samples around it."""
    samples = sorted(
        (float(p[0]), int(p[1]), int(p[2])) for p in _lines(directory, "redis") if len(p) == 3
    )
    before = [s for s in samples if s[0] <= started]
    after = [s for s in samples if s[0] >= ended + COUNT_SETTLE_SECONDS / 2]
    if not before or not after:
        raise RuntimeError(f"no round-trip samples around the burst in {directory}")
    first, last = before[-1], after[0]
    idle = [s for s in before if s[0] >= started - COUNT_IDLE_SECONDS + 0.2]
    idle_rate = 0.0
    if len(idle) > 1 and idle[-1][0] > idle[0][0]:
        idle_rate = (idle[-1][2] - idle[0][2]) / (idle[-1][0] - idle[0][0])
    commands: Counter[str] = Counter()
    for p in _lines(directory, "broker"):
        if first[0] < float(p[0]) <= last[0]:
            for item in p[1:]:
                name, _, n = item.rpartition("=")
                commands[name] += int(n)
    runs = [r for r in read_steps(directory) if r.start >= started]
    return RoundTrips(
        jobs, count_steps(runs), last[1] - first[1], last[2] - first[2], commands, idle_rate
    )


def _count(directory: Path, kind: str, count: int) -> tuple[dict[str, Any], RoundTrips]:
    """A run of `count` jobs (or chains) on an instrumented worker, counting round trips."""
    trace_dir = directory / f"trace-{kind}"
    trace_dir.mkdir(parents=True)
    pipeline = kind == "pipeline"
    with bench_stack(nodelay=True) as stack:
        env = bench_env(
            stack,
            BENCH_TRACE_DIR=str(trace_dir),
            BENCH_COUNT_ROUNDTRIPS="1",
            BENCH_TRACE_STEPS="1",
        )
        app = "bench.instrumented_app" if pipeline else "bench.noop_app"
        proc = worker(stack, env, app=app, name=f"{kind}-count", concurrency=CONCURRENCY)
        assert proc.proc is not None
        client = redis.Redis.from_url(env["REDIS_URL"])
        done = _pipeline_done if pipeline else _bare_done
        args = [VIDEO_URL] if pipeline else []
        try:
            pids = _pids(stack, proc.proc.pid)
            result = _measure(env, kind, count, done, client, args, pids, idle=COUNT_IDLE_SECONDS)
            time.sleep(COUNT_SETTLE_SECONDS)
        except Exception as e:
            raise RuntimeError(f"{e}\n{log_tail(proc)}") from e
        finally:
            proc.stop()
    return result, read_roundtrips(trace_dir, result["started"], result["ended"], count)


def _per(n: float, jobs: int) -> str:
    return fmt(n / jobs, 2)


def _step_lines(counts: RoundTrips, names: tuple[str, ...]) -> list[str]:
    """Per job: each step's runs, round trips (ours, Celery's), wall time and commands."""
    jobs, lines = counts.jobs, []
    for name in names:
        step = counts.steps.get(name, StepCount())
        wall = 1000 * step.seconds / step.runs if step.runs else float("nan")
        lines.append(
            f"  {name:<18} runs {_per(step.runs, jobs)}  ours {_per(step.ours, jobs):>5}  "
            f"Celery's {_per(step.celery, jobs):>4}  ({fmt(wall, 1)} ms a run)"
        )
        for sequence, n in step.sequences.most_common(SEQUENCES_SHOWN) if step.ours else ():
            lines.append(f"      ours, {n} of {step.runs} runs, {sequence}")
        if step.celery:
            lines.append(f"      Celery's: {_by_command(step.celery_commands, jobs)}")
    for name in sorted(set(counts.steps) - set(names)):
        step = counts.steps[name]
        lines.append(
            f"  {name:<18} runs {_per(step.runs, jobs)}  ours {_per(step.ours, jobs):>5}  "
            f"Celery's {_per(step.celery, jobs):>4}"
        )
    lines.append(
        f"  {MAIN:<18} ours {_per(counts.main_ours, jobs)}  Celery's "
        f"{_per(counts.main_celery, jobs)}: {_by_command(counts.main_commands, jobs)}"
    )
    lines.append(
        f"  total              ours {fmt(counts.ours(), 2)}  Celery's {fmt(counts.celery(), 2)}"
        f"  (worker idle: {fmt(counts.idle_per_second, 1)} of Celery's a second, included)"
    )
    return lines


def _by_command(commands: Counter[str], jobs: int) -> str:
    """Commands per job, most frequent first: "BRPOP 3.00, MULTI+ZADD+HSET+EXEC 3.00"."""
    return ", ".join(f"{name} {_per(n, jobs)}" for name, n in commands.most_common()) or "none"


def roundtrip_text(pipeline: RoundTrips, bare: RoundTrips) -> str:
    """The counted round trips, per job and per chain, as a text block."""
    lines = [f"pipeline, {pipeline.jobs} jobs; per job (runs of each task, round trips):"]
    lines += _step_lines(pipeline, PIPELINE_STEPS)
    lines.append(f"bare chain, {bare.jobs} chains; per chain:")
    lines += _step_lines(bare, BARE_STEPS)
    return "\n".join(lines)


# --- Where the worker's CPU goes (py-spy samples by category) --------------------------------

CELERY_MAIN = "Celery, main process (fetch, ack, dispatch to the pool)"
CELERY_POOL = "Celery, pool processes (task tracing, pool IPC, publishing the next task)"
LOGGING = "logging (Celery's and ours, INFO lines)"
OUR_REDIS = "the service's Redis work (redis-py)"
AKOOL = "Akool API via requests (submit, status)"
DOWNLOAD = "video download via requests (archive; address checks included)"
S3 = "S3 via botocore / s3transfer (HEAD, PUT; its upload threads)"
OUR_OTHER = "the service's own Python (records, the archive's heartbeat thread...)"
OTHER = "other (threads, interpreter; no Celery or service frame)"
CATEGORIES = (CELERY_MAIN, CELERY_POOL, LOGGING, OUR_REDIS, AKOOL, DOWNLOAD, S3, OUR_OTHER, OTHER)
_S3_FILES = ("botocore/", "boto3/", "s3transfer/")
_HTTP_FILES = ("requests/", "urllib3/", "http/client.py")
_CELERY_FILES = ("celery/", "kombu/", "billiard/", "vine/", "amqp/", "redis/")


def _file(frame: str) -> str:
    """The source file of a py-spy frame "function (path/file.py:123)"."""
    return frame.rpartition(" (")[2].rstrip(")").rpartition(":")[0]


def categorise(frames: list[str]) -> str:
    """The category of one folded stack (py-spy --subprocesses: "process ..." frames first;
    one of them means the main process)."""
    if sum(f.startswith("process ") for f in frames) == 1:
        return CELERY_MAIN
    files = [_file(f) for f in frames if not f.startswith("process ")]
    if any(f.startswith(_S3_FILES) for f in files):
        return S3
    if any(f.startswith("logging/") for f in files):
        return LOGGING
    if any(f.startswith("worker/") for f in files):
        if any(f.startswith("redis/") for f in files):
            return OUR_REDIS
        if any(f.startswith(_HTTP_FILES) or f == "worker/netguard.py" for f in files):
            return AKOOL if "worker/akool.py" in files else DOWNLOAD
        return OUR_OTHER
    if "concurrent/futures/thread.py" in files:
        return S3  # s3transfer's upload threads: nothing else in the worker uses them
    if any(f.startswith(_CELERY_FILES) for f in files):
        return CELERY_POOL
    return OTHER


def cpu_shares(raw: Path) -> dict[str, float]:
    """The share of a py-spy raw file's samples in each category (empty when none)."""
    counts: Counter[str] = Counter()
    if raw.exists():
        for line in raw.read_text(errors="replace").splitlines():
            stack, _, n = line.rpartition(" ")
            if n.isdigit() and stack:
                counts[categorise(stack.split(";"))] += int(n)
    total = sum(counts.values())
    return {c: counts[c] / total for c in CATEGORIES} if total else {}


def cpu_text(shares: Mapping[str, float], run: Mapping[str, Any], profiled: int) -> str:
    """Worker CPU per job by category: the profile's shares times the timed run's CPU."""
    cpu_ms = run["cpu_ms"]
    lines = [
        f"pipeline worker CPU per job by category: {fmt(cpu_ms, 1)} ms/job in the timed run x "
        f"the share of py-spy's samples over {profiled} more jobs (that run: "
        f"{fmt(run.get('profile_cpu_ms', float('nan')), 1)} ms/job with py-spy attached)"
    ]
    lines += [
        f"  {fmt(share * cpu_ms, 2):>6} ms  {share:6.1%}  {name}" for name, share in shares.items()
    ]
    return "\n".join(lines)


# --- The section -----------------------------------------------------------------------------


def run(
    directory: Path,
    *,
    count: int = 300,
    bare_count: int = 600,
    stock_count: int = 100,
    count_jobs: int = COUNT_JOBS,
    profile_jobs: int = PROFILE_JOBS,
) -> Section:
    """Part 3 as a report section (profile_jobs=0: no py-spy profile)."""
    started = time.monotonic()
    section = Section("3. Engine overhead (jobs per second end to end)")
    pipeline, archived, raw = _pipeline(directory, count, nodelay=True, profile_count=profile_jobs)
    runs = {"pipeline": pipeline, "bare": _bare(bare_count)}
    runs["counted"], pipeline_rt = _count(directory, "pipeline", count_jobs)
    runs["bare_counted"], bare_rt = _count(directory, "bare", count_jobs)
    runs["stored"] = _pipeline(directory, count, nodelay=True, store_results=True)[0]
    runs["bare_stored"] = _bare(bare_count, store_results=True)
    runs["stock"], stock_archived, _ = _pipeline(directory, stock_count, nodelay=False)
    shares = cpu_shares(raw) if raw is not None else {}
    section.intro = _intro(count_jobs)
    section.headers = HEADERS
    section.rows = _rows(runs, pipeline_rt, bare_rt)
    section.raw = _raw(runs, pipeline_rt, bare_rt, shares)
    section.notes = [
        f"{archived} of {count} (and {stock_archived} of {stock_count}) pipeline jobs archived. "
        f"Enqueueing took {fmt(pipeline['enqueue_seconds'], 2)} s (pipeline) and "
        f"{fmt(runs['bare']['enqueue_seconds'], 2)} s (bare), inside the measured time.",
        _roundtrip_note(section.raw, pipeline_rt, bare_rt),
        _cpu_note(section.raw, shares),
        _left_note(section.raw),
        *_STANDING_NOTES,
    ]
    title = f"Redis round trips, counted ({count_jobs} jobs, {count_jobs} chains)"
    section.profiles.append((title, roundtrip_text(pipeline_rt, bare_rt)))
    if shares:
        text = cpu_text(shares, pipeline, profile_jobs)
        section.profiles.append(("Pipeline worker CPU by category", text))
    if raw is not None:
        summary = profiling.summarise(raw, title="pipeline worker", top=15)
        title = f"py-spy: pipeline worker (main process and pool), {profile_jobs} jobs"
        section.profiles.append((title, summary))
    section.seconds = time.monotonic() - started
    return section


HEADERS = [
    "what",
    "N",
    "seconds",
    "jobs/s",
    "ratio to bare",
    "goal >= 0.5",
    "worker CPU ms/job",
    "Redis / moto / simulator CPU ms/job",
    "machine cores busy",
    "Redis round trips/job: ours + Celery's",
]


def _rows(
    runs: Mapping[str, dict[str, Any]], pipeline_rt: RoundTrips, bare_rt: RoundTrips
) -> list[list[str]]:
    """The engine table: the goal's pair first, then the counted, stored and stock runs."""
    ratio = runs["pipeline"]["rate"] / runs["bare"]["rate"]
    verdict = "met" if ratio >= GOAL else f"missed by {GOAL - ratio:.2f}: see the notes"
    count, bare_count = runs["pipeline"]["count"], runs["bare"]["count"]
    counted, stored = runs["counted"], runs["stored"]
    return [
        _row("pipeline (submit -> poll -> archive)", count, runs["pipeline"], _r(ratio), verdict),
        _row("bare chain of 3 no-op tasks", bare_count, runs["bare"], "1.00"),
        _row(
            "pipeline, round trips counted (bench.instrumented_app, BENCH_TRACE_STEPS=1)",
            counted["count"],
            counted,
            _r(counted["rate"] / runs["bare_counted"]["rate"]),
            "(vs bare, counted)",
            pipeline_rt,
        ),
        _row(
            "bare chain, round trips counted",
            counted["count"],
            runs["bare_counted"],
            "1.00",
            "",
            bare_rt,
        ),
        _row(
            "pipeline, results stored (task_ignore_result off, as before)",
            stored["count"],
            stored,
            _r(stored["rate"] / runs["bare_stored"]["rate"]),
            "(vs bare, results stored)",
        ),
        _row("bare chain, results stored", bare_count, runs["bare_stored"], "1.00"),
        _row(
            "pipeline, stock moto (Nagle on) and the simulator as shipped",
            runs["stock"]["count"],
            runs["stock"],
            _r(runs["stock"]["rate"] / runs["bare"]["rate"]),
        ),
    ]


def _r(ratio: float) -> str:
    return fmt(ratio, 2)


def _intro(count_jobs: int) -> str:
    return (
        f"Procfile worker command, --concurrency {CONCURRENCY} (this machine's default), "
        "AKOOL_MAX_RPS=1000. Pipeline: submit_lipsync jobs with sim_polls=0 and "
        "sim_size=102400 (submit, one poll, archive by one PUT). Bare: chain of three no-op "
        "tasks (bench.noop_app), same celery_config, same queues, same Redis. Rate = N / (last "
        f"completion - first enqueue) after a warm-up of {WARMUP}; worker CPU = worker process "
        "tree (main + pool); the servers' CPU is theirs over the same burst; machine cores "
        "busy = /proc/stat's busy time from the end of the enqueueing to the last completion, "
        "over that time. The timed rows "
        "run uninstrumented; the round trips are counted in runs of their own "
        f"({count_jobs} jobs, {count_jobs} chains) with bench/trace.py's steps mode (every "
        "redis-py request of the worker's processes counted, the service's client apart from "
        "Celery's). moto runs with TCP_NODELAY (bench.nodelay) except in the last row; the "
        "simulator always does."
    )


def _raw(
    runs: Mapping[str, dict[str, Any]],
    pipeline_rt: RoundTrips,
    bare_rt: RoundTrips,
    shares: Mapping[str, float],
) -> dict[str, Any]:
    """The figures the goal row and the notes use (CPU in ms per job, rates per second)."""
    pipeline, bare, counted = runs["pipeline"], runs["bare"], runs["counted"]
    machine = pipeline["cpu_ms"] + sum(pipeline["server_ms"].values())
    bare_machine = bare["cpu_ms"] + sum(bare["server_ms"].values())
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
        "machine_ms": machine,
        "bare_machine_ms": bare_machine,
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
        "stock": runs["stock"]["rate"],
        "stored": runs["stored"]["rate"],
        "bare_stored": runs["bare_stored"]["rate"],
    }


def _roundtrip_note(raw: Mapping[str, Any], pipeline: RoundTrips, bare: RoundTrips) -> str:
    """The counted round trips, in a sentence, and what counting cost."""
    steps = ", ".join(
        f"{name.rpartition('.')[2]} {_per(pipeline.steps[name].ours, pipeline.jobs)}"
        for name in PIPELINE_STEPS
        if name in pipeline.steps
    )
    in_tasks = sum(s.celery for s in pipeline.steps.values())
    bare_tasks = sum(s.celery for s in bare.steps.values())
    overhead = raw["counted_cpu_ms"] / raw["pipeline_cpu_ms"] - 1
    bare_overhead = raw["bare_counted_cpu_ms"] / raw["bare_cpu_ms"] - 1
    return (
        "Redis round trips per job, counted (block below), not estimated: the service's "
        f"{fmt(raw['ours_rt'], 2)} ({steps}; {_per(pipeline.main_ours, pipeline.jobs)} in the "
        f"worker's main process), Celery's {fmt(raw['celery_rt'], 2)} "
        f"({_per(in_tasks, pipeline.jobs)} in the tasks, publishing the next one, and "
        f"{_per(pipeline.main_celery, pipeline.jobs)} in the main process: fetching, "
        "recording each delivery in the unacked index and acknowledging). The bare chain: "
        f"Celery's {fmt(raw['bare_celery_rt'], 2)} per chain ({_per(bare_tasks, bare.jobs)} in "
        f"the tasks, {_per(bare.main_celery, bare.jobs)} in the main process). Not counted: "
        "the enqueuing process's (submit_lipsync writes the job record and publishes the "
        f"first task). {_retries(pipeline)}Worker CPU with counting on, against the timed "
        f"rows (which run without it): {fmt(raw['counted_cpu_ms'], 1)} vs "
        f"{fmt(raw['pipeline_cpu_ms'], 1)} ms/job ({overhead:+.0%}), bare "
        f"{fmt(raw['bare_counted_cpu_ms'], 1)} vs {fmt(raw['bare_cpu_ms'], 1)} ms/chain "
        f"({bare_overhead:+.0%})."
    )


def _retries(counts: RoundTrips) -> str:
    """The task runs that came back (RETRY), when any, in a sentence."""
    parts = [
        f"{step.states['RETRY']} of {step.runs} {name.rpartition('.')[2]} runs"
        for name, step in counts.steps.items()
        if step.states["RETRY"]
    ]
    if not parts:
        return ""
    return (
        f"Runs that came back as retries ({', '.join(parts)}; RETRY in the block below) are "
        "in the per-job figures: a task whose slot of the request budget lies ahead, even by "
        "a millisecond at AKOOL_MAX_RPS=1000, is retried on that slot rather than wait "
        "(worker/akool.py, BUDGET_WAIT_SECONDS=0). "
    )


def _cpu_note(raw: Mapping[str, Any], shares: Mapping[str, float]) -> str:
    """Where the pipeline worker's CPU goes, against the bare chain's."""
    cpu = raw["pipeline_cpu_ms"]
    if not shares:
        return f"Where the CPU goes: no profile (py-spy missing); worker {fmt(cpu, 1)} ms/job."
    celery = (shares[CELERY_MAIN] + shares[CELERY_POOL]) * cpu
    parts = ", ".join(
        f"{name.split(' (')[0]} {fmt(shares[name] * cpu, 1)}"
        for name in (S3, OUR_REDIS, AKOOL, DOWNLOAD, OUR_OTHER, LOGGING, OTHER)
    )
    redis_ms = shares[OUR_REDIS] * cpu
    return (
        f"Where a pipeline job's worker CPU goes ({fmt(cpu, 1)} ms/job; block below): Celery's "
        f"own task handling {fmt(celery, 1)} ms (main process "
        f"{fmt(shares[CELERY_MAIN] * cpu, 1)}, by /proc {fmt(raw['pipeline_main_ms'], 1)}; "
        f"pool {fmt(shares[CELERY_POOL] * cpu, 1)}), against {fmt(raw['bare_cpu_ms'], 1)} ms "
        f"for a whole bare chain; the rest is the work, {fmt(cpu - celery, 1)} ms: {parts} ms. "
        f"The service's {fmt(raw['ours_rt'], 1)} round trips cost about "
        f"{fmt(redis_ms / raw['ours_rt'], 2)} ms of worker CPU each."
    )


def _cut(now: float, allowed: float) -> str:
    """How much `now` must shrink to fit `allowed`, in words."""
    return "within it" if now <= allowed else f"a cut of {1 - allowed / now:.0%} needed"


def _left_note(raw: Mapping[str, Any]) -> str:
    """What is left to the goal, and why: the machine's CPU and the pool's time per job."""
    target, cores = raw["target"], raw["cores"]
    cpu_allowed, pool_allowed = 1000 * cores / target, 1000 * CONCURRENCY / target
    servers = " + ".join(f"{n} {fmt(ms, 1)}" for n, ms in raw["pipeline_server_ms"].items())
    steps = ", ".join(f"{n} {fmt(ms, 1)}" for n, ms in raw["pool_steps_ms"].items())
    waiting = raw["pool_ms"] - raw["counted_pool_cpu_ms"]
    return (
        f"What is left, and why: 0.5 x bare is {fmt(target)} jobs/s, the pipeline does "
        f"{fmt(raw['pipeline'])}. (1) CPU: the worker shares this machine's {cores} cores with "
        "Redis, moto, the simulator and the bench's own processes; from the end of the "
        f"enqueueing to the last completion {fmt(raw['busy_cores'], 2)} cores were busy (bare: "
        f"{fmt(raw['bare_busy_cores'], 2)}). A job costs {fmt(raw['machine_ms'], 1)} ms of CPU "
        f"in the worker and the servers (worker {fmt(raw['pipeline_cpu_ms'], 1)} + {servers}), "
        f"a bare chain {fmt(raw['bare_machine_ms'], 1)} ms; {fmt(target)} jobs/s allows "
        f"{fmt(cpu_allowed, 1)} ms for everything ({_cut(raw['machine_ms'], cpu_allowed)}). "
        f"(2) The pool: with --concurrency {CONCURRENCY}, {fmt(target)} jobs/s allows "
        f"{fmt(pool_allowed, 1)} ms of pool-process time per job; the three tasks held one "
        f"for {fmt(raw['pool_ms'], 1)} ms in the counted run ({steps}; "
        f"{_cut(raw['pool_ms'], pool_allowed)}), of which {fmt(raw['counted_pool_cpu_ms'], 1)}"
        f" ms on the CPU and {fmt(waiting, 1)} ms off it, waiting for Redis, the simulator "
        f"and moto to answer or for a core (bare: {fmt(raw['bare_pool_ms'], 1)} ms a chain). "
        f"{_engine_or_work(raw)}"
    )


def _engine_or_work(raw: Mapping[str, Any]) -> str:
    """Whether the gap is Celery's or the work's (from the profile's shares), and what 0.5 x
    would take."""
    shares = raw["shares"]
    cpu = raw["pipeline_cpu_ms"]
    servers = raw["pipeline_server_ms"]
    cpu_allowed = 1000 * raw["cores"] / raw["target"]
    pool_allowed = 1000 * CONCURRENCY / raw["target"]
    fake = servers.get("moto", 0.0) + servers.get("simulator", 0.0)
    text = ""
    if shares:
        celery = (shares[CELERY_MAIN] + shares[CELERY_POOL]) * cpu
        extra = raw["machine_ms"] - cpu - sum(raw["bare_server_ms"].values())
        text = (
            f"Celery's own handling of a job's three tasks costs {fmt(celery, 1)} ms of worker "
            f"CPU, a whole bare chain {fmt(raw['bare_cpu_ms'], 1)} ms; the rest of the gap is "
            f"the work a job does: {fmt(cpu - celery, 1)} ms in the worker and "
            f"{fmt(extra, 1)} ms more in the servers than a bare chain's (moto and the "
            f"simulator alone take {fmt(fake, 1)} ms a job, {fake / cpu_allowed:.0%} of what "
            "0.5 x allows for everything). "
        )
    needs = []
    if raw["machine_ms"] > cpu_allowed:
        needs.append(
            f"the CPU per job, worker and servers together, down from "
            f"{fmt(raw['machine_ms'], 1)} to {fmt(cpu_allowed, 1)} ms"
        )
    if raw["pool_ms"] > pool_allowed:
        needs.append(
            f"the pool time per job down from {fmt(raw['pool_ms'], 1)} to {fmt(pool_allowed, 1)} ms"
        )
    if not needs:
        return text + "Neither limit binds in these figures: they do not say what does."
    return text + "On this machine 0.5 x needs at least " + " and ".join(needs) + _now(raw)


def _now(raw: Mapping[str, Any]) -> str:
    """Whether the cores or the pool are saturated at the pipeline's rate already."""
    occupied = raw["pool_ms"] * raw["counted_rate"] / (1000 * CONCURRENCY)
    busy = f"{fmt(raw['busy_cores'], 2)} of {raw['cores']} cores busy"
    figures = f"({busy}, the pool {occupied:.0%} occupied in the counted run)"
    saturated = [
        name
        for name, full in (
            ("the cores", raw["busy_cores"] >= 0.95 * raw["cores"]),
            ("the pool", occupied >= 0.95),
        )
        if full
    ]
    if saturated:
        return f"; {' and '.join(saturated)} are saturated already {figures}."
    return (
        f"; at {fmt(raw['pipeline'])} jobs/s neither is saturated yet {figures}: these cuts "
        "are needed, not sufficient."
    )


def summary_rows(raw: Mapping[str, Any]) -> list[list[str]]:
    """Part 3's goal row; a miss names the limit that binds and points to part 3's notes."""
    ok = raw["ratio"] >= GOAL
    verdict = f"{'met' if ok else 'missed'} ({raw['ratio']:.2f} x)"
    cpu_allowed = 1000 * raw["cores"] / raw["target"]
    pool_allowed = 1000 * CONCURRENCY / raw["target"]
    if not ok and raw["machine_ms"] > cpu_allowed:
        verdict += (
            f": a job takes {fmt(raw['machine_ms'], 1)} ms of CPU on this machine (worker "
            f"{fmt(raw['pipeline_cpu_ms'], 1)}, Redis, moto and the simulator the rest), "
            f"0.5 x bare allows {fmt(cpu_allowed, 1)}"
        )
    elif not ok and raw["pool_ms"] > pool_allowed:
        verdict += (
            f": a job holds a pool process {fmt(raw['pool_ms'], 1)} ms, 0.5 x bare allows "
            f"{fmt(pool_allowed, 1)}"
        )
    if not ok:
        verdict += "; where it goes and what is left: part 3's notes"
    return [
        [
            "3. pipeline >= 0.5 x bare chain",
            f"{fmt(raw['pipeline'])} jobs/s ({fmt(raw['ours_rt'], 1)} + "
            f"{fmt(raw['celery_rt'], 1)} Redis round trips per job, the service's + Celery's, "
            "counted)",
            f"{fmt(raw['bare'])} chains/s ({fmt(raw['bare_celery_rt'], 1)} round trips, Celery's)",
            verdict,
        ]
    ]


_STANDING_NOTES = (
    "Stock moto: http.server handlers write headers and body in two send() calls "
    "without TCP_NODELAY, so each small answer waits for the client's delayed ACK "
    "(~40 ms; an Akool call against a simulator with Nagle on took ~44 ms instead of "
    "~3 ms). The simulator turns Nagle off itself (worker/dev/simulator/http_base.py); "
    "moto's werkzeug server is patched by bench.nodelay (real S3 does not pay this).",
    "At the default AKOOL_MAX_RPS=5 the pipeline is capped at 2.5 jobs/s by the fleet's "
    "request budget (a submit and at least one poll per job), whatever the engine does.",
)


def _row(
    label: str,
    count: int,
    run: dict[str, Any],
    ratio: str,
    verdict: str = "",
    counts: RoundTrips | None = None,
) -> list[str]:
    """One row of the engine table: what ran, how many, how long, how fast, its CPU (the
    worker's and the servers'), and its round trips when counted."""
    servers = " / ".join(fmt(run["server_ms"].get(n, float("nan")), 1) for n in _SERVERS)
    trips = f"{fmt(counts.ours(), 1)} + {fmt(counts.celery(), 1)}" if counts else ""
    return [
        label,
        str(count),
        fmt(run["seconds"], 2),
        fmt(run["rate"]),
        ratio,
        verdict,
        fmt(run["cpu_ms"], 1),
        servers,
        f"{fmt(run['busy_cores'], 2)} of {os.cpu_count()}",
        trips,
    ]


_SERVERS = ("redis", "moto", "simulator")
