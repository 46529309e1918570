"""How long the jobs dashboard's pages take with 10,000 jobs in Redis, and what the poll log
(the timeline's polls) costs each job's record.

A private redis-server (config/redis.conf) holds 10,000 jobs written through `JobStore` as
the scrape part seeds them (half queued, a quarter processing, an eighth archiving, an
eighth archived), then an eighth of them failed with an error, 100 at risk (Akool deletes
their video within the hour) and every one with a full poll log (POLL_LOG_ENTRIES polls).
The web process's internal app (METRICS_PORT: /metrics and the dashboard) is served by the
same waitress server class on loopback and asked over HTTP with basic auth, as a browser
does. MEMORY USAGE of job hashes with and without their poll log gives the log's cost.
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import redis
import requests

from bench import scrape
from bench.common import Deadline, Section, fmt, percentile
from bench.stack import PORTS
from worker.dev.stack import free_port
from worker.names import Step
from worker.store import JobStore, keys
from worker.store.records import POLL_LOG_ENTRIES, poll_log_with
from worker.web.dashboard.app import Dashboard, InternalApp, presigner
from worker.web.server import WebhookServer


@dataclass(frozen=True)
class Size:
    """Jobs in Redis, of them at risk, GETs of each page, job hashes MEMORY USAGE reads."""

    jobs: int
    at_risk: int
    requests: int
    memory_samples: int


FULL = Size(jobs=scrape.JOBS, at_risk=100, requests=20, memory_samples=200)
SMOKE = Size(jobs=scrape.SMOKE_JOBS, at_risk=5, requests=2, memory_samples=10)
GOAL_SECONDS = 0.200
# The polls part's Redis memory per job at 10,000 jobs (bench/RESULTS.md), before the poll
# log, and its goal.
POLLS_BYTES_PER_JOB = 3_679
MEMORY_GOAL_BYTES = 4_096
USER, PASSWORD = "bench", "bench-password"
PAGES = {
    "jobs (no filter)": "/jobs",
    "jobs?status=failed": "/jobs?status=failed",
    "jobs?q=<3 hex digits>": "/jobs?q=abc",
    "one archived job": "/jobs/{archived}",
    "one failed job": "/jobs/{failed}",
}


def full_poll_log(polls: int = POLL_LOG_ENTRIES) -> str:
    """A log of `polls` polls over two hours, as a long job leaves it."""
    log = ""
    for i in range(polls):
        log = poll_log_with(log, 60 + i * 360, 2 if i < polls - 1 else 3)
    return log


def prepare(client: redis.Redis, store: JobStore, size: Size) -> dict[str, str]:
    """Seed as the scrape part does, then failures, jobs at risk and full poll logs; an
    archived and a failed job's ids."""
    scrape.seed(store, size.jobs)
    ids = [i.decode() for i in client.zrange(keys.JOBS_INDEX, 0, -1)]
    now = time.time()
    failed = archived = ""
    for n, job_id in enumerate(ids):
        if n % 8 == 2:
            store.fail(job_id, "the video is longer than 60 seconds (code 1204)")
            failed = job_id
        elif n % 8 == 1 and n < 8 * size.at_risk:
            store.update(job_id, expires_ts=now + 3600)
        elif n % 8 == 7:
            store.update(job_id, archive_uri=f"s3://bucket/lipsync/{job_id}.mp4")
            archived = job_id
    pipe = client.pipeline(transaction=False)
    log = full_poll_log()
    for job_id in ids:
        pipe.hset(keys.job(job_id), "poll_log", log)
    pipe.execute()
    return {"archived": archived, "failed": failed}


def memory(client: redis.Redis, samples: int) -> dict[str, float]:
    """Mean MEMORY USAGE of job hashes with their full poll log, and of the same without."""
    ids = [i.decode() for i in client.zrange(keys.JOBS_INDEX, 0, samples - 1)]
    with_log = [int(client.memory_usage(keys.job(i), samples=0) or 0) for i in ids]
    for job_id in ids:
        client.hdel(keys.job(job_id), "poll_log")
    without = [int(client.memory_usage(keys.job(i), samples=0) or 0) for i in ids]
    return {
        "hash_with_log": statistics.mean(with_log),
        "hash_without_log": statistics.mean(without),
        "log_bytes": statistics.mean(with_log) - statistics.mean(without),
        "log_chars": len(full_poll_log()),
    }


def time_pages(base: str, ids: dict[str, str], count: int) -> dict[str, dict[str, float]]:
    """Median, p95 and max ms of `count` GETs of each page (after one not counted)."""
    session = requests.Session()
    session.auth = (USER, PASSWORD)
    out = {}
    for name, path in PAGES.items():
        url = base + path.format(**ids)
        session.get(url, timeout=30).raise_for_status()
        seconds = []
        for _ in range(count):
            started = time.perf_counter()
            answer = session.get(url, timeout=30)
            seconds.append(time.perf_counter() - started)
            answer.raise_for_status()
        out[name] = {
            "median_ms": statistics.median(seconds) * 1000,
            "p95_ms": percentile(seconds, 95) * 1000,
            "max_ms": max(seconds) * 1000,
            "kib": len(answer.content) / 1024,
        }
    return out


def _app(client: redis.Redis, store: JobStore) -> InternalApp:
    s3 = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",  # never asked: presigning is local
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106
        region_name="us-east-1",
    )

    def retry(job_id: str) -> Step:
        raise ValueError("not in the bench")

    dashboard = Dashboard(
        client, store, user=USER, password=PASSWORD, presign=presigner(s3), retry=retry
    )
    return InternalApp(lambda environ, start_response: [], dashboard)


def run(*, smoke: bool, work: Path, deadline: Deadline) -> Section:
    """Seed, serve, time each page, then MEMORY USAGE with and without the poll log."""
    size = SMOKE if smoke else FULL
    with scrape.seeded_redis(work, lambda c, s: prepare(c, s, size)) as seeded:
        client, store, ids, seeded_seconds = seeded
        with PORTS:
            port = free_port()
            web = WebhookServer(_app(client, store), "127.0.0.1", port, threads=2)
        stop = threading.Event()
        thread = threading.Thread(target=web.run_until, args=(stop,), daemon=True)
        thread.start()
        try:
            pages = time_pages(f"http://127.0.0.1:{port}", ids, size.requests)
        finally:
            stop.set()
            thread.join(15)
        raw: dict[str, Any] = {"pages": pages, **memory(client, size.memory_samples)}
    raw["seeded_seconds"] = seeded_seconds
    return _section(raw, size, smoke)


def _section(raw: dict[str, Any], size: Size, smoke: bool) -> Section:
    jobs = f"{size.jobs:,}"
    section = Section(f"jobs dashboard pages ({jobs} jobs)", smoke=smoke, raw=raw)
    per_job = POLLS_BYTES_PER_JOB + raw["log_bytes"]
    section.table(
        ["setting or figure", "value"],
        [
            ["jobs in Redis (seeded as by scrape, then 1/8 failed)", jobs],
            ["of them at risk (Akool deletes the video within the hour)", str(size.at_risk)],
            ["polls in each job's poll log (POLL_LOG_ENTRIES)", str(POLL_LOG_ENTRIES)],
            ["seeded in, s", fmt(raw["seeded_seconds"], 1)],
            ["GETs of each page (after one not counted)", str(size.requests)],
            ["a full poll log, characters", str(raw["log_chars"])],
            [
                f"MEMORY USAGE of a job hash with / without its log, B (mean of "
                f"{size.memory_samples})",
                f"{fmt(raw['hash_with_log'], 0)} / {fmt(raw['hash_without_log'], 0)} "
                f"({fmt(raw['log_bytes'], 0)} B of log)",
            ],
        ],
    )
    section.table(
        ["page", "ms median / p95 / max", "KiB", "goal"],
        [
            [
                name,
                f"{fmt(f['median_ms'], 1)} / {fmt(f['p95_ms'], 1)} / {fmt(f['max_ms'], 1)}",
                fmt(f["kib"], 1),
                f"< {GOAL_SECONDS * 1000:g} ms",
            ]
            for name, f in raw["pages"].items()
        ],
    )
    slowest = max(raw["pages"].items(), key=lambda item: item[1]["median_ms"])
    worst = max(f["max_ms"] for f in raw["pages"].values())
    section.goal(
        f"dashboard page < 200 ms ({jobs} jobs, over HTTP)",
        f"slowest {slowest[0]}: {fmt(slowest[1]['median_ms'], 1)} ms median "
        f"(max of all pages {fmt(worst, 1)} ms)",
        "200 ms",
        slowest[1]["median_ms"] < GOAL_SECONDS * 1000,
    )
    section.goal(
        "Redis memory per job < 4 KiB with a full poll log (10,000 jobs)",
        f"{fmt(per_job, 0)} B (polls' {POLLS_BYTES_PER_JOB:,} B + "
        f"{fmt(raw['log_bytes'], 0)} B of poll log, MEMORY USAGE)",
        "4,096 B",
        per_job < MEMORY_GOAL_BYTES,
    )
    return section
