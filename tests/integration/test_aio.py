"""The asyncio API (worker.aio) next to real workers: application code with an event loop,
in a process of its own as an application would run it, submits, adopts, reads, finds,
cancels and waits for jobs, and its loop stays responsive while hundreds of calls run.

The application's side is the coroutines below; `in_app` runs one of them with
`asyncio.run` in a child process with the deployment's environment and returns what it
returned (JSON)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.conftest import AUDIO_URL, JOB_TIMEOUT_SECONDS, Deployment, video_url
from worker import aio, messages
from worker.dev.stack import SIM_API_KEY
from worker.store import Job

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
# Where the simulator takes a lip-sync submit (Akool's path), for "other code" to call.
SUBMIT_PATH = "/api/open/v3/content/video/lipsync"
# The lateness test: calls of each kind, the ticker's period and the most it may be late.
CALLS = 200
TICK_SECONDS = 0.010
MAX_LATENESS_SECONDS = 0.050


def in_app(deployment: Deployment, name: str, *args: str, timeout: float = 120) -> Any:
    """Run the coroutine function `name` of this module with `asyncio.run` in a process of
    its own, with the deployment's settings; what it returned."""
    code = (
        "import asyncio, json, sys\n"
        "from tests.integration import test_aio\n"
        "print(json.dumps(asyncio.run(test_aio.main(sys.argv[1], sys.argv[2:]))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, name, *args],
        env=deployment.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


async def main(name: str, args: list[str]) -> Any:
    """(In the application's process.) Run one of the coroutines below, then close the
    loop's Redis connections."""
    try:
        return await APP[name](*args)
    finally:
        await aio.close()


# --- the application's side -------------------------------------------------------------------


async def submit_and_wait(video: str, key: str) -> dict[str, Any]:
    job_id = await aio.submit_lipsync(video, AUDIO_URL, idempotency_key=key, metadata={"o": "1"})
    ended = await aio.wait_for_job(job_id, JOB_TIMEOUT_SECONDS)
    read = await aio.get_job(job_id)
    found = await aio.find_job(key)
    return {"job_id": job_id, "ended": ended.to_dict(), "read": read.to_dict(), "found": found.id}


async def submit_twice(video: str, key: str) -> dict[str, Any]:
    first = await aio.submit_lipsync(video, AUDIO_URL, idempotency_key=key)
    again = await aio.submit_lipsync(video, AUDIO_URL, idempotency_key=key)
    ended = await aio.wait_for_job(first, JOB_TIMEOUT_SECONDS)
    return {"first": first, "again": again, "status": ended.status}


async def cancel_while_running(video: str) -> dict[str, Any]:
    job_id = await aio.submit_lipsync(video, AUDIO_URL)
    try:
        await aio.wait_for_job(job_id, 0.5)
        timed_out = None
    except TimeoutError as e:
        timed_out = str(e)
    cancelled = await aio.cancel_job(job_id)
    ended = await aio.wait_for_job(job_id, JOB_TIMEOUT_SECONDS)
    again = await aio.cancel_job(job_id)
    return {
        "timed_out": timed_out,
        "cancelled": cancelled.to_dict(),
        "ended": ended.to_dict(),
        "again": again.to_dict(),
    }


async def unknown(job_id: str, key: str) -> list[str]:
    refusals = []
    for call in (
        aio.get_job(job_id),
        aio.wait_for_job(job_id, 1),
        aio.cancel_job(job_id),
        aio.find_job(key),
    ):
        try:
            await call
            refusals.append("none")
        except KeyError as e:
            refusals.append(f"KeyError {e}")
    return refusals


async def adopt_and_wait(akool_id: str) -> dict[str, Any]:
    job_id = await aio.archive_akool_job(akool_id, metadata={"from": "elsewhere"})
    return (await aio.wait_for_job(job_id, JOB_TIMEOUT_SECONDS)).to_dict()


def cpu_queue_seconds() -> float:
    """How long this thread has waited for a CPU while it could run (Linux's schedstat): the
    machine's doing, not the loop's. 0 where the kernel does not say."""
    try:
        with open("/proc/thread-self/schedstat") as stats:
            return int(stats.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


async def lateness_while_busy(calls: str) -> dict[str, Any]:
    """Submit `calls` jobs and wait for each, then cancel them, all at once, while a ticker
    on the same loop records how late each of its wake-ups is, and how much of that the
    loop's thread spent waiting for a CPU (a busy machine: not the loop's doing); with, for
    the failure message, when, and the CPU this process used in the loop's thread and in
    others meanwhile."""
    loop = asyncio.get_running_loop()
    ticks: list[tuple[float, float, float, float, float]] = []
    busy = True

    async def ticker() -> None:
        for _ in range(100_000):  # bounded: about 17 minutes of ticks
            if not busy:
                return
            asleep, queued = loop.time(), cpu_queue_seconds()
            mine, everyones = time.thread_time(), time.process_time()
            await asyncio.sleep(TICK_SECONDS)
            late = loop.time() - asleep - TICK_SECONDS
            queued = cpu_queue_seconds() - queued
            mine = time.thread_time() - mine
            others = time.process_time() - everyones - mine
            ticks.append((late - queued, late, loop.time() - started, mine, others))

    async def submitted(video: str) -> tuple[str, asyncio.Task[Job]]:
        job_id = await aio.submit_lipsync(video, AUDIO_URL)
        return job_id, asyncio.create_task(aio.wait_for_job(job_id, JOB_TIMEOUT_SECONDS))

    async def load() -> list[str]:
        jobs = await asyncio.gather(*(submitted(video_url()) for _ in range(int(calls))))
        # The waits end as any ending ends them: published by the script that ends the job.
        await asyncio.gather(*(aio.cancel_job(job_id) for job_id, _ in jobs))
        return [(await waiting).status for _, waiting in jobs]

    started = loop.time()
    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.1)  # the ticker's first wake-ups, before the load
    statuses = await load()
    busy = False
    await ticking
    worst = sorted(ticks)[-5:]
    return {
        "statuses": dict(Counter(statuses)),
        "ticks": len(ticks),
        "max": worst[-1][0],
        "max_raw": max(tick[1] for tick in ticks),
        "worst": [
            f"{(late - own) * 1e3:.1f} + {own * 1e3:.1f} ms late at {at:.2f} s (waiting for a "
            f"CPU + the loop's own); CPU {mine * 1e3:.1f} ms in the loop's thread and "
            f"{others * 1e3:.1f} ms in others"
            for own, late, at, mine, others in worst
        ],
    }


APP = {
    f.__name__: f
    for f in (
        submit_and_wait,
        submit_twice,
        cancel_while_running,
        unknown,
        adopt_and_wait,
        lateness_while_busy,
    )
}


# --- the tests --------------------------------------------------------------------------------


def test_a_job_submitted_from_an_event_loop_is_archived_and_read_back_by_id_and_by_key(
    deployment: Deployment,
) -> None:
    video = video_url()
    got = in_app(deployment, "submit_and_wait", video, f"aio-{video[-32:]}")
    assert got["ended"]["status"] == "archived"
    assert got["ended"]["archive_uri"].endswith(f"{got['job_id']}.mp4")
    assert got["read"] == got["ended"]
    assert got["read"]["metadata"] == {"o": "1"}
    assert got["found"] == got["job_id"]


def test_the_same_idempotency_key_twice_from_an_event_loop_is_one_job_and_one_akool_job(
    deployment: Deployment,
) -> None:
    video = video_url()
    got = in_app(deployment, "submit_twice", video, f"aio-{video[-32:]}")
    assert got["again"] == got["first"]
    assert got["status"] == "archived"
    assert deployment.akool_jobs_for(video) == 1


def test_a_running_job_cancelled_from_an_event_loop_ends_cancelled_and_stays_so(
    deployment: Deployment,
) -> None:
    video = video_url(polls=100_000)
    got = in_app(deployment, "cancel_while_running", video)
    assert "after 0.5 s" in got["timed_out"]
    assert got["cancelled"]["status"] == "cancelled"
    assert got["cancelled"]["error"] == messages.CANCELLED
    assert got["ended"] == got["cancelled"]
    assert got["again"] == got["cancelled"]
    assert deployment.store.get(got["cancelled"]["id"]).status == "cancelled"


def test_an_unknown_job_or_key_is_a_key_error_from_an_event_loop(
    deployment: Deployment,
) -> None:
    refusals = in_app(deployment, "unknown", "0" * 32, "never-used-key")
    assert [r.split()[0] for r in refusals] == ["KeyError"] * 4


def test_an_akool_job_other_code_submitted_is_adopted_from_an_event_loop_and_archived(
    deployment: Deployment,
) -> None:
    video = video_url()
    answer = requests.post(
        deployment.env["AKOOL_BASE_URL"] + SUBMIT_PATH,
        json={"video_url": video, "audio_url": AUDIO_URL},
        headers={"x-api-key": SIM_API_KEY},
        timeout=10,
    ).json()
    akool_id = answer["data"]["_id"]
    job = in_app(deployment, "adopt_and_wait", akool_id)
    assert job["status"] == "archived"
    assert job["akool_id"] == akool_id
    assert job["metadata"] == {"from": "elsewhere"}
    # The one submit Akool saw is the other code's: none of ours.
    assert deployment.submits_for(video) == 1
    assert deployment.akool_jobs_for(video) == 1


def test_the_event_loop_is_never_late_by_more_than_50_ms_while_submits_and_waits_run_on_it(
    deploy: Any,
) -> None:
    # No workers: the jobs end by being cancelled from the loop, within a second or two, so
    # the machine is as free as the rest of the suite leaves it, for as short a time.
    quiet = deploy(workers=False)
    got = in_app(quiet, "lateness_while_busy", str(CALLS), timeout=240)
    assert got["statuses"] == {"cancelled": CALLS}
    assert got["ticks"] > 10
    print(f"event loop lateness over {got['ticks']} ticks (raw max {got['max_raw']:.4f} s): ")
    print(got["worst"])
    # Late by the loop's own doing: the time its thread waited for a CPU (a machine busy with
    # the rest of the suite) is the kernel's, and is left out.
    assert got["max"] <= MAX_LATENESS_SECONDS, got["worst"]
