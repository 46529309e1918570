"""Part 5: what one /metrics scrape costs with 10,000 jobs in Redis.

A private redis-server (config/redis.conf) holds 10,000 jobs written through `JobStore`, in
every status. The collector is served as on METRICS_PORT (prometheus_client's server on
loopback) and scraped over HTTP, as Prometheus does; INFO commandstats before and after one
scrape counts the commands Redis ran for it, those run inside scripts included. The first
scrape of a Redis whose jobs were written before the counts were kept (an upgrade) counts
them once; it is timed apart.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import requests
from prometheus_client import CollectorRegistry, start_http_server

from bench.common import Section, fmt, percentile
from worker import keys, metrics
from worker.dev.stack import RedisServer, free_port
from worker.jobs import JobStore, new_job_id
from worker.status import JobStatus

JOBS = 10_000
SCRAPES = 20
GOAL_SECONDS = 0.050
GOAL_COMMANDS = 20
# Measured on main, before the counts were kept: the scrape read every job's status.
MAIN_SCRAPE_MS = 968
MAIN_SCRAPE_COMMANDS = 12_008
RETENTION_SECONDS = 40 * 86400
VIDEO = "https://videos.example.com/in.mp4"
AUDIO = "https://videos.example.com/voice.wav"
RESULT = "https://akool.example.com/out.mp4"


def seed(store: JobStore, count: int) -> None:
    """`count` jobs: half queued, a quarter processing, an eighth archived, an eighth
    archiving (their videos finished at Akool, not in S3 yet)."""
    for i in range(count):
        job_id = new_job_id()
        now = time.time()
        store.create(job_id, VIDEO, AUDIO, due=now + 60)
        if i % 2 == 0:
            continue
        store.update(job_id, status=JobStatus.PROCESSING, akool_id=f"a{i}", expires_ts=now + 6e5)
        if i % 4 == 3:
            store.update(job_id, status=JobStatus.ARCHIVING, result_url=RESULT, completed_ts=now)
            if i % 8 == 7:
                store.update(job_id, status=JobStatus.ARCHIVED)


def commands_run(client: redis.Redis) -> int:
    """Commands Redis ran so far (inside scripts too), the bench's own INFO left out."""
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for name, v in stats.items() if name != "cmdstat_info")


def timed_scrape(url: str) -> float:
    """Seconds one GET /metrics takes, over HTTP."""
    started = time.perf_counter()
    answer = requests.get(url, timeout=30)
    answer.raise_for_status()
    return time.perf_counter() - started


def measure(client: redis.Redis, url: str) -> dict[str, Any]:
    """The first scrape (counting the jobs once), then one counted and SCRAPES timed."""
    client.delete(keys.METRICS_JOBS_BY_STATUS, keys.UNARCHIVED)  # as before the counts
    before = commands_run(client)
    first = timed_scrape(url)
    first_commands = commands_run(client) - before
    before = commands_run(client)
    timed_scrape(url)
    commands = commands_run(client) - before
    seconds = [timed_scrape(url) for _ in range(SCRAPES)]
    rendered = []
    for _ in range(SCRAPES):
        started = time.perf_counter()
        metrics.render(client)
        rendered.append(time.perf_counter() - started)
    return {
        "first_ms": first * 1000,
        "first_commands": first_commands,
        "commands": commands,
        "median_ms": statistics.median(seconds) * 1000,
        "p95_ms": percentile(seconds, 95) * 1000,
        "max_ms": max(seconds) * 1000,
        "render_median_ms": statistics.median(rendered) * 1000,
        "render_max_ms": max(rendered) * 1000,
    }


def run(directory: Path | None = None) -> Section:
    """Seed, serve, scrape; the section for RESULTS.md (goal figures in `raw`)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        server = RedisServer(Path(tmp)).start()
        try:
            client = redis.Redis(port=server.port)
            seed_started = time.monotonic()
            seed(JobStore(client, retention_seconds=RETENTION_SECONDS), JOBS)
            seeded_in = time.monotonic() - seed_started
            registry = CollectorRegistry(auto_describe=False)
            registry.register(metrics.FleetCollector(client))
            port = free_port()
            httpd, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
            try:
                raw = measure(client, f"http://127.0.0.1:{port}/metrics")
            finally:
                httpd.shutdown()
                httpd.server_close()
        finally:
            server.stop()
    raw["seeded_seconds"] = seeded_in
    return _section(raw, time.monotonic() - started)


def _section(raw: dict[str, Any], seconds: float) -> Section:
    section = Section("5. Cost of one /metrics scrape (10,000 jobs)", raw=raw, seconds=seconds)
    section.intro = (
        f"{JOBS:,} jobs written through JobStore into a private redis-server (half queued, a "
        "quarter processing, an eighth archiving, an eighth archived), seeded in "
        f"{fmt(raw['seeded_seconds'], 1)} s. The collector served as on METRICS_PORT and "
        f"scraped over HTTP on loopback, {SCRAPES} times after one counted scrape; commands "
        "= INFO commandstats after minus before one scrape (commands run by scripts included)."
    )
    section.headers = ["scrape", "ms median / p95 / max", "Redis commands", "goal"]
    section.rows = [
        [
            "over HTTP, counts kept (steady state)",
            f"{fmt(raw['median_ms'], 2)} / {fmt(raw['p95_ms'], 2)} / {fmt(raw['max_ms'], 2)}",
            str(raw["commands"]),
            f"< {GOAL_SECONDS * 1000:g} ms, < {GOAL_COMMANDS} commands",
        ],
        [
            "in process (metrics.render), counts kept",
            f"{fmt(raw['render_median_ms'], 2)} / - / {fmt(raw['render_max_ms'], 2)}",
            str(raw["commands"]),
            "",
        ],
        [
            "first scrape of a Redis from before the counts (counts its jobs once)",
            fmt(raw["first_ms"], 1),
            f"{raw['first_commands']:,}",
            "once per Redis",
        ],
        [
            "on main, before this change (every job's status read)",
            f"{MAIN_SCRAPE_MS:,}",
            f"{MAIN_SCRAPE_COMMANDS:,}",
            "",
        ],
    ]
    section.notes = [
        "The job counts by status and the set of finished, unarchived videos are kept by the "
        "Lua scripts that create and move jobs (worker/job_scripts.py); a scrape reads them and "
        "the other counters in one pipelined round trip (four hashes, one counter, ZCOUNT of "
        "the expiry set for at-risk, the head of the unarchived set, the budget's rate, the "
        "counts of waiting jobs and the head of each family's waiting set, LLEN of each "
        "Celery queue), then EXISTS on the unarchived head's record when there is one. The "
        "six waiting commands came with the rule of proof (jobs waiting on Akool, a file, a "
        "download or S3): 10 commands before.",
        "The one-time count (an upgrade with jobs already in Redis) runs in one Lua script, "
        "O(jobs), blocking Redis that long once; the commands column counts its HMGETs.",
    ]
    return section


def summary_rows(raw: dict[str, Any]) -> list[list[str]]:
    """The goal rows of this part for the Goals table."""
    fast = raw["median_ms"] < GOAL_SECONDS * 1000
    cheap = raw["commands"] < GOAL_COMMANDS
    return [
        [
            "5. one /metrics scrape < 50 ms (10,000 jobs, over HTTP)",
            f"{fmt(raw['median_ms'], 2)} ms median (max {fmt(raw['max_ms'], 2)} ms)",
            f"50 ms (main: {MAIN_SCRAPE_MS:,} ms)",
            "met" if fast else "missed",
        ],
        [
            "5. Redis commands per scrape < 20 (10,000 jobs)",
            str(raw["commands"]),
            f"20 (main: {MAIN_SCRAPE_COMMANDS:,})",
            "met" if cheap else "missed",
        ],
    ]
