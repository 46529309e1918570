"""The engine part's runs: a burst of pipeline jobs or bare chains on a fresh stack and the
Procfile's worker, timed (from the first enqueue to the last completion), with the CPU of
the worker and of each server over it; optionally profiled with py-spy, or counted by
bench/trace.py's steps mode (its Redis round trips)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import redis

from bench import profiling
from bench.procstat import cpu_seconds, tree_cpu_seconds
from bench.roundtrips import COUNT_IDLE_SECONDS, COUNT_SETTLE_SECONDS, RoundTrips, read_roundtrips
from bench.stack import bench_env, bench_stack, enqueue, running_worker, wait_for
from worker.dev.stack import Stack
from worker.status import JobStatus
from worker.store import keys

VIDEO_URL = "https://videos.example.com/in.mp4?sim_polls=0&sim_size=102400"
CONCURRENCY = 2
SERVERS = ("redis", "moto", "simulator")
Done = Callable[[redis.Redis, list[str]], Callable[[], bool]]


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
    for name, server in zip(SERVERS, (stack.redis, stack.s3, stack.simulator), strict=True):
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


@contextlib.contextmanager
def _running(
    app: str, name: str, extra: Mapping[str, str], *, nodelay: bool = True
) -> Iterator[tuple[dict[str, str], redis.Redis, int, dict[str, int]]]:
    """A fresh stack and the Procfile's worker of `app` on it: its environment, a Redis
    client, the worker's pid and the pids whose CPU counts. An error carries the log's tail."""
    with bench_stack(nodelay=nodelay) as stack:
        env = bench_env(stack, **extra)
        client = redis.Redis.from_url(env["REDIS_URL"])
        with running_worker(stack, env, app=app, name=name, concurrency=CONCURRENCY) as proc:
            assert proc.proc is not None
            yield env, client, proc.proc.pid, _pids(stack, proc.proc.pid)


def _measure(
    env: dict[str, str],
    kind: str,
    count: int,
    warmup: int,
    done: Done,
    client: redis.Redis,
    pids: Mapping[str, int],
    *,
    idle: float = 0.0,
) -> dict[str, Any]:
    """Warm up (`warmup` jobs or chains, when any), wait `idle` s, enqueue `count` in a burst
    and wait for the last to finish."""
    args = [VIDEO_URL] if kind == "pipeline" else []
    if warmup:
        warm = enqueue(env, kind, str(warmup), *args)
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


def pipeline(
    directory: Path,
    count: int,
    warmup: int,
    *,
    nodelay: bool = True,
    profile_count: int = 0,
    store_results: bool = False,
) -> tuple[dict[str, Any], int, Path | None]:
    """Measure `count` jobs; then, if asked, profile `profile_count` more with py-spy. The
    figures (with the profiled run's CPU per job as "profile_cpu_ms"), how many of the
    `count` were archived, and the profile's raw file."""
    app, extra = "worker.celery_app", {}
    if store_results:
        app, extra = "bench.instrumented_app", {"BENCH_STORE_RESULTS": "1"}
    raw = None
    with _running(app, "pipeline", extra, nodelay=nodelay) as (env, client, pid, pids):
        result = _measure(env, "pipeline", count, warmup, _pipeline_done, client, pids)
        if profile_count:
            raw = _profile(directory, env, client, pid, profile_count, result)
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


def bare(count: int, warmup: int, *, store_results: bool = False) -> dict[str, Any]:
    """Measure `count` chains of three no-op tasks (bench.noop_app)."""
    extra = {"BENCH_STORE_RESULTS": "1"} if store_results else {}
    with _running("bench.noop_app", "bare", extra) as (env, client, _, pids):
        return _measure(env, "bare", count, warmup, _bare_done, client, pids)


def counted(
    directory: Path, kind: str, count: int, warmup: int
) -> tuple[dict[str, Any], RoundTrips]:
    """A run of `count` jobs (kind "pipeline") or chains ("bare") on an instrumented worker,
    counting round trips."""
    trace_dir = directory / f"trace-{kind}"
    trace_dir.mkdir(parents=True)
    pipeline = kind == "pipeline"
    app = "bench.instrumented_app" if pipeline else "bench.noop_app"
    trace = {
        "BENCH_TRACE_DIR": str(trace_dir),
        "BENCH_COUNT_ROUNDTRIPS": "1",
        "BENCH_TRACE_STEPS": "1",
    }
    done = _pipeline_done if pipeline else _bare_done
    with _running(app, f"{kind}-count", trace) as (env, client, _, pids):
        result = _measure(env, kind, count, warmup, done, client, pids, idle=COUNT_IDLE_SECONDS)
        time.sleep(COUNT_SETTLE_SECONDS)
    return result, read_roundtrips(trace_dir, result["started"], result["ended"], count)
