"""What one poll costs in round trips to Redis, counted on the service's own connections
against a real redis-server and the simulator (Celery's own messages are not counted: the
poll task's steps are run as the task runs them, without a worker)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests

from worker.akool.budget import RequestBudget, holding_slot
from worker.akool.client import AkoolClient
from worker.config.settings import Secret, Settings
from worker.dev.simulator import Simulator, SimulatorConfig
from worker.dev.stack import RedisServer
from worker.errors import StillProcessing
from worker.metrics import Metrics
from worker.pipeline import await_completion
from worker.status import JobStatus
from worker.store.jobs import JobStore, new_job_id

API_KEY = "sim-key-Roundtrips4distinct"
SETTINGS = Settings(poll_initial_seconds=5.0, poll_max_seconds=60.0)
# The most round trips a poll may make (issue: each step's Redis work pipelined or scripted).
MOST_ROUND_TRIPS_PER_POLL = 4


class CountingConnection(redis.Connection):
    """A connection that counts its requests: one `send_packed_command` is one round trip
    (a command, a pipeline's execute, or an EVALSHA)."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    simulator = Simulator(SimulatorConfig(api_key=API_KEY), host="127.0.0.1", port=0).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def counted(redis_server: RedisServer) -> Iterator[redis.Redis]:
    pool = redis.ConnectionPool(
        connection_class=CountingConnection, host="127.0.0.1", port=redis_server.port
    )
    client = redis.Redis(connection_pool=pool)
    yield client
    client.close()


def _poll_task(store: JobStore, client: AkoolClient, job_id: str, reserved_at: float | None):
    """The poll task's Redis work, as worker/tasks.py `poll` does it: own the loop (reading
    the record), poll on the slot it holds if any, record; the next poll's plan is in the
    StillProcessing raised."""
    job = store.own_poll_record(job_id, "poll-task-1")
    assert job is not None
    with pytest.raises(StillProcessing) as info, holding_slot(reserved_at):
        await_completion(store, client, job_id, stall=30.0, job=job, schedule=SETTINGS)
    return info.value


def _submitted_job(store: JobStore, client: AkoolClient) -> str:
    job_id = new_job_id()
    video = f"https://videos.example.com/{uuid.uuid4().hex}.mp4?sim_polls=1000"
    store.create(job_id, video, "https://videos.example.com/a.wav", due=time.time() + 60)
    akool_id = client.submit(video, "https://videos.example.com/a.wav")
    store.update(job_id, status=JobStatus.SUBMITTED, akool_id=akool_id, submitted_ts=time.time())
    return job_id


def test_a_poll_makes_at_most_four_round_trips_to_redis(
    counted: redis.Redis, sim: Simulator
) -> None:
    key = f"test:budget:{uuid.uuid4().hex}"
    store = JobStore(counted, retention_seconds=40 * 86400)
    budget = RequestBudget(counted, 1000.0, key=key)
    with requests.Session() as session:
        # A slot a millisecond away is waited for here, not turned into a countdown.
        # Counted as the worker wires it (worker/deps.py): each call counted in the metrics.
        client = AkoolClient(
            sim.base_url,
            api_key=Secret(API_KEY),
            session=session,
            budget=budget,
            budget_wait=1.0,
            observer=Metrics(counted).akool_call,
        )
        job_id = _submitted_job(store, client)
        _poll_task(store, client, job_id, None)  # loads the scripts (a first EVALSHA misses)

        before = CountingConnection.sent
        answer = _poll_task(store, client, job_id, None)
        light = CountingConnection.sent - before

        # Under load: a poll back at its reserved slot sends without asking the budget, and
        # the queue being longer than its backoff, books its next slot at once.
        counted.set(key, repr(round((time.time() + 3000) * 1_000_000)))
        before = CountingConnection.sent
        booked = _poll_task(store, client, job_id, time.time())
        on_slot = CountingConnection.sent - before

    assert answer.reserved_at is None  # no queue: the next poll waits its backoff
    # Own the loop and read the job, take a slot, count the call in the metrics, record the
    # answer and the next due time (no queue a moment ago: nothing to book for the next).
    assert light == MOST_ROUND_TRIPS_PER_POLL
    assert booked.reserved_at is not None and booked.next_in is not None
    assert booked.next_in > 2900
    # On its slot: own and read, count the call, book the next slot, record.
    assert on_slot == MOST_ROUND_TRIPS_PER_POLL
    assert store.get(job_id).polls == 3
