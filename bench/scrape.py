"""What one /metrics scrape costs with 10,000 jobs in Redis.

A private redis-server (config/redis.conf) holds 10,000 jobs written through `JobStore`, in
every status. The collector is served as on METRICS_PORT (prometheus_client's server on
loopback) and scraped over HTTP, as Prometheus does; INFO commandstats before and after one
scrape counts the commands Redis ran for it, those run inside scripts included. The first
scrape of a Redis whose jobs were written before the counts were kept (an upgrade) counts
them once; it is timed apart.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis
import requests
from prometheus_client import CollectorRegistry, start_http_server

from bench.common import Deadline, Section, fmt, percentile
from bench.stack import PORTS
from worker import metrics
from worker.dev.stack import RedisServer, free_port
from worker.status import JobStatus
from worker.store import JobStore, keys, new_job_id

JOBS = 10_000
SMOKE_JOBS = 200
SCRAPES = 20
SMOKE_SCRAPES = 3
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


@contextlib.contextmanager
def seeded_redis(
    directory: Path, prepare: Callable[[redis.Redis, JobStore], Any]
) -> Iterator[tuple[redis.Redis, JobStore, Any, float]]:
    """A private redis-server with jobs written by `prepare(client, store)`: the client,
    the store, what `prepare` returned and the seconds it took; stopped at the end."""
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        with PORTS:
            server = RedisServer(Path(tmp)).start()
        try:
            client = redis.Redis(port=server.port)
            store = JobStore(client, retention_seconds=RETENTION_SECONDS)
            started = time.monotonic()
            prepared = prepare(client, store)
            yield client, store, prepared, time.monotonic() - started
        finally:
            server.stop()


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


def measure(client: redis.Redis, url: str, scrapes: int) -> dict[str, Any]:
    """The first scrape (counting the jobs once), then one counted and `scrapes` timed."""
    client.delete(keys.METRICS_JOBS_BY_STATUS, keys.UNARCHIVED)  # as before the counts
    before = commands_run(client)
    first = timed_scrape(url)
    first_commands = commands_run(client) - before
    before = commands_run(client)
    timed_scrape(url)
    commands = commands_run(client) - before
    seconds = [timed_scrape(url) for _ in range(scrapes)]
    rendered = []
    for _ in range(scrapes):
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


def run(*, smoke: bool, work: Path, deadline: Deadline) -> Section:
    """Seed JOBS (SMOKE_JOBS), serve, scrape SCRAPES (SMOKE_SCRAPES) times."""
    jobs, scrapes = (SMOKE_JOBS, SMOKE_SCRAPES) if smoke else (JOBS, SCRAPES)
    with seeded_redis(work, lambda _, store: seed(store, jobs)) as (client, _, _, seeded):
        registry = CollectorRegistry(auto_describe=False)
        registry.register(metrics.FleetCollector(client))
        with PORTS:
            port = free_port()
            httpd, _ = start_http_server(port, addr="127.0.0.1", registry=registry)
        try:
            raw = measure(client, f"http://127.0.0.1:{port}/metrics", scrapes)
        finally:
            httpd.shutdown()
            httpd.server_close()
    raw.update(jobs=jobs, scrapes=scrapes, seeded_seconds=seeded)
    return _section(raw, smoke)


def _section(raw: dict[str, Any], smoke: bool) -> Section:
    jobs = f"{raw['jobs']:,}"
    section = Section(f"cost of one /metrics scrape ({jobs} jobs)", smoke=smoke, raw=raw)
    section.table(
        ["setting", "value"],
        [
            ["jobs in Redis (half queued, 1/4 processing, 1/8 archiving, 1/8 archived)", jobs],
            ["seeded in, s", fmt(raw["seeded_seconds"], 1)],
            ["timed scrapes (after one counted)", str(raw["scrapes"])],
        ],
    )
    section.table(
        ["scrape", "ms median / p95 / max", "Redis commands", "goal"],
        [
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
                "on main, before the counts were kept (every job's status read)",
                f"{MAIN_SCRAPE_MS:,}",
                f"{MAIN_SCRAPE_COMMANDS:,}",
                "",
            ],
        ],
    )
    section.goal(
        f"one /metrics scrape < 50 ms ({jobs} jobs, over HTTP)",
        f"{fmt(raw['median_ms'], 2)} ms median (max {fmt(raw['max_ms'], 2)} ms)",
        f"50 ms (main: {MAIN_SCRAPE_MS:,} ms)",
        raw["median_ms"] < GOAL_SECONDS * 1000,
    )
    section.goal(
        f"Redis commands per scrape < 20 ({jobs} jobs)",
        str(raw["commands"]),
        f"20 (main: {MAIN_SCRAPE_COMMANDS:,})",
        raw["commands"] < GOAL_COMMANDS,
    )
    return section
