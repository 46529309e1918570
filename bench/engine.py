"""Part 3: engine overhead — end-to-end jobs per second against a bare chain.

The pipeline runs real jobs (`submit_lipsync`) against an instant simulator
(`sim_polls=0`: done at the first poll) with 100 KB videos (one PUT), on the Procfile's
worker. The reference is a chain of three no-op tasks (`bench.noop_app`) on the same Redis
settings, worker command and `celery_config`. Each side: a warm-up, then N enqueued in a
burst from another process; the rate is N / (last completion - first enqueue).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from bench import profiling
from bench.common import Section, fmt
from bench.procstat import tree_cpu_seconds
from bench.stack import bench_env, bench_stack, enqueue, log_tail, wait_for, worker
from worker import keys
from worker.status import JobStatus

VIDEO_URL = "https://videos.example.com/in.mp4?sim_polls=0&sim_size=102400"
WARMUP = 10
GOAL = 0.5


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


def _measure(
    env: dict[str, str],
    kind: str,
    count: int,
    done: Any,
    client: redis.Redis,
    args: list[str],
    pid: int,
) -> dict[str, Any]:
    warm = enqueue(env, kind, str(WARMUP), *args)
    if wait_for(done(client, warm["ids"]), 60) is None:
        raise RuntimeError(f"{kind} warm-up did not finish in 60 s")
    cpu0 = tree_cpu_seconds(pid)
    burst = enqueue(env, kind, str(count), *args)
    ended = wait_for(done(client, burst["ids"]), 300)
    if ended is None:
        raise RuntimeError(f"{kind}: {count} did not finish in 300 s")
    seconds = ended - burst["started"]
    return {
        "count": count,
        "seconds": seconds,
        "rate": count / seconds,
        "cpu_ms": 1000 * (tree_cpu_seconds(pid) - cpu0) / count,
        "enqueue_seconds": burst["ended"] - burst["started"],
        "ids": burst["ids"],
    }


def _pipeline(
    directory: Path,
    count: int,
    *,
    nodelay: bool,
    profile_count: int = 0,
    store_results: bool = False,
) -> tuple[dict[str, Any], int, str | None]:
    """Measure `count` jobs; then, if asked, profile `profile_count` more with py-spy."""
    summary = None
    with bench_stack(nodelay=nodelay) as stack:
        env = bench_env(stack)
        app = "worker.celery_app"
        if store_results:
            env["BENCH_STORE_RESULTS"] = "1"
            app = "bench.instrumented_app"
        client = redis.Redis.from_url(env["REDIS_URL"])
        proc = worker(stack, env, app=app, name="pipeline")
        assert proc.proc is not None
        try:
            result = _measure(
                env, "pipeline", count, _pipeline_done, client, [VIDEO_URL], proc.proc.pid
            )
            if profile_count:
                raw = directory / "engine-pipeline.raw"
                spy = profiling.record(proc.proc.pid, 60, raw, subprocesses=True)
                if spy is not None:
                    time.sleep(0.5)
                    more = enqueue(env, "pipeline", str(profile_count), VIDEO_URL)
                    wait_for(_pipeline_done(client, more["ids"]), 120)
                    profiling.stop(spy)
                    summary = profiling.summarise(raw, title="pipeline worker", top=15)
        except Exception as e:
            raise RuntimeError(f"{e}\n{log_tail(proc)}") from e
        finally:
            proc.stop()
        statuses = [client.hget(keys.JOB_PREFIX + i, "status") for i in result["ids"]]
        archived = sum(1 for s in statuses if s == JobStatus.ARCHIVED.encode())
    return result, archived, summary


def _bare(count: int, *, store_results: bool = False) -> dict[str, Any]:
    with bench_stack(nodelay=True) as stack:
        env = bench_env(stack)
        if store_results:
            env["BENCH_STORE_RESULTS"] = "1"
        client = redis.Redis.from_url(env["REDIS_URL"])
        proc = worker(stack, env, app="bench.noop_app", name="bare")
        assert proc.proc is not None
        try:
            return _measure(env, "bare", count, _bare_done, client, [], proc.proc.pid)
        except Exception as e:
            raise RuntimeError(f"{e}\n{log_tail(proc)}") from e
        finally:
            proc.stop()


def run(
    directory: Path,
    *,
    count: int = 300,
    bare_count: int = 600,
    stock_count: int = 100,
    profile: bool = True,
) -> Section:
    started = time.monotonic()
    section = Section("3. Engine overhead (jobs per second end to end)")
    pipeline, archived, summary = _pipeline(
        directory, count, nodelay=True, profile_count=300 if profile else 0
    )
    bare = _bare(bare_count)
    stored, _, _ = _pipeline(directory, count, nodelay=True, store_results=True)
    bare_stored = _bare(bare_count, store_results=True)
    stock, stock_archived, _ = _pipeline(directory, stock_count, nodelay=False)
    ratio = pipeline["rate"] / bare["rate"]
    section.intro = (
        "Procfile worker command, --concurrency 2 (this machine's default), AKOOL_MAX_RPS=1000. "
        "Pipeline: submit_lipsync jobs with sim_polls=0 and sim_size=102400 (submit, one poll, "
        "archive by one PUT). Bare: chain of three no-op tasks (bench.noop_app), same "
        "celery_config, same queues, same Redis. Rate = N / (last completion - first "
        f"enqueue) after a warm-up of {WARMUP}; CPU = worker process tree (main + pool). "
        "moto runs with TCP_NODELAY (bench.nodelay) except in the last row; the simulator "
        "always does."
    )
    section.headers = [
        "what",
        "N",
        "seconds",
        "jobs/s",
        "ratio to bare",
        "goal >= 0.5",
        "worker CPU ms/job",
    ]
    verdict = "met" if ratio >= GOAL else f"missed by {GOAL - ratio:.2f}"
    bare_ratio = stored["rate"] / bare_stored["rate"]
    section.rows = [
        _row("pipeline (submit -> poll -> archive)", count, pipeline, fmt(ratio, 2), verdict),
        _row("bare chain of 3 no-op tasks", bare_count, bare, "1.00"),
        _row(
            "pipeline, results stored (task_ignore_result off, as before)",
            count,
            stored,
            fmt(bare_ratio, 2),
            "(vs bare, results stored)",
        ),
        _row("bare chain, results stored", bare_count, bare_stored, "1.00"),
        _row(
            "pipeline, stock moto (Nagle on) and the simulator as shipped",
            stock_count,
            stock,
            fmt(stock["rate"] / bare["rate"], 2),
        ),
    ]
    section.notes.append(
        f"{archived} of {count} (and {stock_archived} of {stock_count}) pipeline jobs archived. "
        f"Enqueueing took {fmt(pipeline['enqueue_seconds'], 2)} s (pipeline) and "
        f"{fmt(bare['enqueue_seconds'], 2)} s (bare), inside the measured time."
    )
    section.notes.append(
        "Stock moto: http.server handlers write headers and body in two send() calls "
        "without TCP_NODELAY, so each small answer waits for the client's delayed ACK "
        "(~40 ms; an Akool call against a simulator with Nagle on took ~44 ms instead of "
        "~3 ms). The simulator turns Nagle off itself (worker/dev/simulator/http_base.py); "
        "moto's werkzeug server is patched by bench.nodelay (real S3 does not pay this)."
    )
    section.notes.append(
        "Where a pipeline job's worker CPU goes (profile below, and per-step timings): per job "
        "one S3 HEAD (Archiver.existing) and one PUT through botocore (about a fifth of the "
        "worker's CPU), about 20 Redis round trips (job record, due set, request budget, "
        "poll ownership), two Akool calls through requests, and three Celery tasks. The "
        "bare chain is only the last of these, so the ratio measures the work, not Celery."
    )
    section.notes.append(
        "At the default AKOOL_MAX_RPS=5 the pipeline is capped at 2.5 jobs/s by the fleet's "
        "request budget (a submit and at least one poll per job), whatever the engine does."
    )
    if summary:
        section.profiles.append(
            ("py-spy: pipeline worker (main process and pool children), 300 jobs", summary)
        )
    section.raw = {
        "pipeline": pipeline["rate"],
        "bare": bare["rate"],
        "ratio": ratio,
        "stock": stock["rate"],
        "pipeline_cpu_ms": pipeline["cpu_ms"],
        "bare_cpu_ms": bare["cpu_ms"],
        "stored": stored["rate"],
        "bare_stored": bare_stored["rate"],
    }
    section.seconds = time.monotonic() - started
    return section


def _row(label: str, count: int, run: dict[str, Any], ratio: str, verdict: str = "") -> list[str]:
    """One row of the engine table: what ran, how many, how long, how fast, its CPU."""
    return [
        label,
        str(count),
        fmt(run["seconds"], 2),
        fmt(run["rate"]),
        ratio,
        verdict,
        fmt(run["cpu_ms"], 1),
    ]
