"""Put N jobs straight into steady-state polling, for the polls and budget parts.

    python -m bench.seed N

For each job: an Akool job on the simulator that stays "processing" (status 2) for a day,
a job record in `processing` with its Akool id and `polls=5` (so the backoff is at
POLL_MAX_SECONDS from the first poll on), and the rest of its chain (poll -> archive)
enqueued with a first countdown drawn from the steady-state distribution: the residual of a
poll interval U(POLL_MAX/2, POLL_MAX) seen at a random moment. So the worker meets, from the
start, the load it would carry after all N jobs had been polling for a while, instead of a
ramp of fast early polls. Settings (REDIS_URL, AKOOL_BASE_URL...) come from the environment.
Prints one JSON line. With BENCH_SEED_PREVIOUS set to a path, also writes there one line
"<akool id> <epoch>" per job: when its notional previous poll was (the start of the drawn
interval whose rest is the first countdown), for the budget part's first gap between polls.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from celery import chain

from worker import deps
from worker.status import JobStatus
from worker.store.jobs import new_job_id
from worker.tasks import archive, poll

VIDEO_URL = "https://videos.example.com/in.mp4?sim_polls=1000000&sim_seconds=86400"
AUDIO_URL = "https://videos.example.com/voice.wav"
SUBMIT_PATH = "/api/open/v3/content/video/lipsync"
STEADY_POLLS = 5


def _akool_ids(count: int) -> list[str]:
    s = deps.settings()
    assert s.akool_api_key is not None
    headers = {"x-api-key": s.akool_api_key.reveal()}
    url = s.akool_base_url + SUBMIT_PATH
    body = {"video_url": VIDEO_URL, "audio_url": AUDIO_URL}

    def one(session: requests.Session) -> str:
        answer = session.post(url, json=body, headers=headers, timeout=30).json()
        return str(answer["data"]["_id"])

    sessions = [requests.Session() for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda i: one(sessions[i % 4]), range(count)))


def residual_countdown(maximum: float, rng: random.Random) -> float:
    """Time to the next poll of a job seen at a random moment of steady polling."""
    return steady_state_draw(maximum, rng)[1]


def steady_state_draw(maximum: float, rng: random.Random) -> tuple[float, float]:
    """A job seen at a random moment of steady polling: (the poll interval it is in, the
    time left to its next poll)."""
    low, high = maximum / 2, maximum
    interval = math.sqrt(rng.uniform(low * low, high * high))  # length-biased interval
    return interval, rng.uniform(0, interval)


def main(argv: list[str]) -> None:
    count = int(argv[0])
    started = time.time()
    s = deps.settings()
    store = deps.job_store()
    akool_ids = _akool_ids(count)
    created = time.time()
    rng = random.Random(count)
    jobs = []
    previous: list[str] = []
    for akool_id in akool_ids:
        job_id = new_job_id()
        now = time.time()
        interval, countdown = steady_state_draw(s.poll_max_seconds, rng)
        previous.append(f"{akool_id} {now + countdown - interval:.3f}")
        store.create(job_id, VIDEO_URL, AUDIO_URL, due=now + countdown + s.stall_seconds)
        store.update(
            job_id,
            status=JobStatus.PROCESSING,
            akool_id=akool_id,
            submitted_ts=now,
            expires_ts=now + 7 * 86400,
            poll_deadline_ts=now + s.poll_timeout_seconds,
            polls=STEADY_POLLS,
        )
        chain(poll.si(job_id), archive.s()).apply_async(countdown=countdown)
        jobs.append(job_id)
    if os.environ.get("BENCH_SEED_PREVIOUS"):
        Path(os.environ["BENCH_SEED_PREVIOUS"]).write_text("\n".join(previous) + "\n")
    print(
        json.dumps(
            {
                "started": started,
                "akool_seconds": created - started,
                "ended": time.time(),
                "jobs": len(jobs),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
