"""Part 6: how long the jobs dashboard's pages take with 10,000 jobs in Redis, and what the
poll log (the timeline's polls) costs each job's record.

A private redis-server (config/redis.conf) holds 10,000 jobs written through `JobStore` as
part 5 seeds them (half queued, a quarter processing, an eighth archiving, an eighth
archived), then an eighth of them failed with an error, 100 at risk (Akool deletes their
video within the hour) and every one with a full poll log (POLL_LOG_ENTRIES polls). The
web process's internal app (METRICS_PORT: /metrics and the dashboard) is served by the
same waitress server class on loopback and asked over HTTP with basic auth, as a browser
does. MEMORY USAGE of job hashes with and without their poll log gives the log's cost.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import redis
import requests

from bench import scrape
from bench.common import Section, fmt, percentile
from worker import keys
from worker.dashboard.app import Dashboard, InternalApp, presigner
from worker.dev.stack import RedisServer, free_port
from worker.jobs import JobStore
from worker.names import Step
from worker.records import POLL_LOG_ENTRIES, poll_log_with
from worker.web import WebhookServer

JOBS = scrape.JOBS
REQUESTS = 20
GOAL_SECONDS = 0.200
AT_RISK = 100
# Part 2's Redis memory per job at 10,000 jobs (bench/RESULTS.md), before the poll log,
# and its goal.
PART2_BYTES_PER_JOB = 3_679
MEMORY_GOAL_BYTES = 4_096
# Job hashes MEMORY USAGE is asked about (with and without their log).
MEMORY_SAMPLES = 200
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


def prepare(client: redis.Redis, store: JobStore) -> dict[str, str]:
    """Seed as part 5, then failures, jobs at risk and full poll logs; an archived and a
    failed job's ids."""
    scrape.seed(store, JOBS)
    ids = [i.decode() for i in client.zrange(keys.JOBS_INDEX, 0, -1)]
    now = time.time()
    failed = archived = ""
    for n, job_id in enumerate(ids):
        if n % 8 == 2:
            store.fail(job_id, "the video is longer than 60 seconds (code 1204)")
            failed = job_id
        elif n % 8 == 1 and n < 8 * AT_RISK:
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


def memory(client: redis.Redis) -> dict[str, float]:
    """Mean MEMORY USAGE of job hashes with their full poll log, and of the same without."""
    ids = [i.decode() for i in client.zrange(keys.JOBS_INDEX, 0, MEMORY_SAMPLES - 1)]
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


def time_pages(base: str, ids: dict[str, str]) -> dict[str, dict[str, float]]:
    """Median, p95 and max ms of REQUESTS GETs of each page (after one not counted)."""
    session = requests.Session()
    session.auth = (USER, PASSWORD)
    out = {}
    for name, path in PAGES.items():
        url = base + path.format(**ids)
        session.get(url, timeout=30).raise_for_status()
        seconds = []
        for _ in range(REQUESTS):
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


def run(directory: Path | None = None) -> Section:
    """Seed, serve, time each page; the section for RESULTS.md (goal figures in `raw`)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            client = redis.Redis(port=server.port)
            store = JobStore(client, retention_seconds=scrape.RETENTION_SECONDS)
            seed_started = time.monotonic()
            ids = prepare(client, store)
            seeded_in = time.monotonic() - seed_started
            port = free_port()
            web = WebhookServer(_app(client, store), "127.0.0.1", port, threads=2)
            stop = threading.Event()
            thread = threading.Thread(target=web.run_until, args=(stop,), daemon=True)
            thread.start()
            try:
                pages = time_pages(f"http://127.0.0.1:{port}", ids)
            finally:
                stop.set()
                thread.join(15)
            raw: dict[str, Any] = {"pages": pages, **memory(client)}
        finally:
            server.stop()
    raw["seeded_seconds"] = seeded_in
    return _section(raw, time.monotonic() - started)


def _section(raw: dict[str, Any], seconds: float) -> Section:
    section = Section("6. Jobs dashboard pages (10,000 jobs)", raw=raw, seconds=seconds)
    section.intro = (
        f"{JOBS:,} jobs seeded as in part 5, an eighth of them then failed, {AT_RISK} at risk "
        f"and each with a full poll log ({POLL_LOG_ENTRIES} polls), in "
        f"{fmt(raw['seeded_seconds'], 1)} s. The web process's internal app served by its "
        f"waitress server class on loopback, each page asked {REQUESTS} times over HTTP with "
        "basic auth after one not counted."
    )
    section.headers = ["page", "ms median / p95 / max", "KiB", "goal"]
    section.rows = [
        [
            name,
            f"{fmt(f['median_ms'], 1)} / {fmt(f['p95_ms'], 1)} / {fmt(f['max_ms'], 1)}",
            fmt(f["kib"], 1),
            f"< {GOAL_SECONDS * 1000:g} ms",
        ]
        for name, f in raw["pages"].items()
    ]
    section.notes = [
        "The jobs page reads the counts by status and the at-risk count the scripts keep "
        "(part 5's one pipelined round trip), the head of the expiry set, the newest ids of "
        "the index (up to 2,000 when filtering, statuses by one pipelined HGET each) and the "
        "records shown in one pipelined HGETALL; a job page reads one record.",
        f"Poll log: a full log is {raw['log_chars']} characters; MEMORY USAGE of a job hash "
        f"{fmt(raw['hash_with_log'], 0)} B with it, {fmt(raw['hash_without_log'], 0)} B "
        f"without ({fmt(raw['log_bytes'], 0)} B, mean of {MEMORY_SAMPLES} jobs). Part 2's "
        f"{PART2_BYTES_PER_JOB:,} B per job at 10,000 jobs plus that is "
        f"{fmt(PART2_BYTES_PER_JOB + raw['log_bytes'], 0)} B (part 2 not run again here).",
    ]
    return section


def summary_rows(raw: dict[str, Any]) -> list[list[str]]:
    """The goal rows of this part for the Goals table."""
    slowest = max(raw["pages"].items(), key=lambda item: item[1]["median_ms"])
    worst = max(f["max_ms"] for f in raw["pages"].values())
    per_job = PART2_BYTES_PER_JOB + raw["log_bytes"]
    return [
        [
            "6. dashboard page < 200 ms (10,000 jobs, over HTTP)",
            f"slowest {slowest[0]}: {fmt(slowest[1]['median_ms'], 1)} ms median "
            f"(max of all pages {fmt(worst, 1)} ms)",
            "200 ms",
            "met" if slowest[1]["median_ms"] < GOAL_SECONDS * 1000 else "missed",
        ],
        [
            "6. Redis memory per job < 4 KiB with a full poll log (10,000 jobs)",
            f"{fmt(per_job, 0)} B (part 2's {PART2_BYTES_PER_JOB:,} B + "
            f"{fmt(raw['log_bytes'], 0)} B of poll log, MEMORY USAGE)",
            "4,096 B",
            "met" if per_job < MEMORY_GOAL_BYTES else "missed",
        ],
    ]
