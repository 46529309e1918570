"""Tests of worker.aio without a redis-server: what it refuses before any I/O (the same
refusals as the sync API), where it publishes (a worker thread, a few at a time), how many
calls of a loop work at once, and how Redis' failures reach the caller. The seams are the
Redis client aio builds (`_client_for`), the Celery chain and the sync store."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
import redis
from redis.asyncio.sentinel import SentinelConnectionPool

from tests.unit.job_fakes import AUDIO, VIDEO
from worker import aio, api, deps, messages
from worker.config.settings import Settings, load_settings
from worker.errors import CorruptRecord, StoreUnavailable
from worker.store import keys, new_job_id, scripts

SETTINGS = load_settings({})


def run(call: Coroutine[Any, Any, Any]) -> Any:
    """The coroutine's result on a loop of its own, its Redis connections closed after."""

    async def closing() -> Any:
        try:
            return await call
        finally:
            await aio.close()

    return asyncio.run(closing())


class FakeScript:
    """A script registered on FakeRedis: CREATE_JOB stores the job as new, UPDATE_UNLESS_FINAL
    answers `update_answer`."""

    def __init__(self, client: FakeRedis, text: str) -> None:
        self.client, self.text = client, text

    async def __call__(self, *, keys: list[str], args: list[Any]) -> Any:
        if self.text == scripts.CREATE_JOB:
            self.client.created.append(args[1])
            return [b"new", str(args[1]).encode()]
        assert self.text == scripts.UPDATE_UNLESS_FINAL
        return self.client.update_answer


class FakeRedis:
    """redis.asyncio's client at aio's seam: the two scripts and reads that take a moment,
    counting how many are in flight at once."""

    def __init__(self) -> None:
        self.created: list[str] = []
        self.update_answer: Any = 1
        self.failure: Exception | None = None
        self.in_flight = self.most_in_flight = 0
        self.closed = False

    def register_script(self, text: str) -> FakeScript:
        return FakeScript(self, text)

    async def hgetall(self, key: str) -> dict[bytes, bytes]:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.001)
            if self.failure is not None:
                raise self.failure
            fields = {"id": key.removeprefix(keys.JOB_PREFIX), "status": "processing"}
            fields |= {"video_url": VIDEO, "audio_url": AUDIO, "created_ts": "1.0"}
            return {k.encode(): v.encode() for k, v in fields.items()}
        finally:
            self.in_flight -= 1

    async def aclose(self) -> None:
        self.closed = True


class Chain:
    """A Celery chain at aio's seam: records the thread that publishes it."""

    def __init__(self, seams: Seams, job_id: str) -> None:
        self.seams, self.job_id = seams, job_id

    def apply_async(self) -> None:
        self.seams.publish(self.job_id)


class Seams:
    """The fake client, what was published and from which thread, and the sync store's
    fail() calls."""

    def __init__(self) -> None:
        self.redis = FakeRedis()
        self.published: list[tuple[str, str]] = []
        self.failed: list[tuple[str, str, str]] = []
        self.publish_error: Exception | None = None
        self.publish_seconds = 0.0
        self.publishing = self.most_publishing = 0
        self.lock = threading.Lock()

    def publish(self, job_id: str) -> None:
        with self.lock:
            self.publishing += 1
            self.most_publishing = max(self.most_publishing, self.publishing)
        time.sleep(self.publish_seconds)  # a blocking kombu socket
        with self.lock:
            self.publishing -= 1
        if self.publish_error is not None:
            raise self.publish_error
        self.published.append((job_id, threading.current_thread().name))

    def fail(self, job_id: str, error: str) -> bool:
        self.failed.append((job_id, error, threading.current_thread().name))
        return True


@pytest.fixture
def seams(monkeypatch: pytest.MonkeyPatch) -> Seams:
    made = Seams()
    monkeypatch.setattr(deps, "settings", lambda: SETTINGS)
    monkeypatch.setattr(deps, "job_store", lambda: made)
    monkeypatch.setattr(aio, "_client_for", lambda settings: made.redis)
    monkeypatch.setattr(aio, "pipeline_signature", lambda job_id: Chain(made, job_id))
    return made


def refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a refused call must not reach Redis or Celery")


class RefusingStore:
    """The sync store at the sync API's seam: any use of it fails the test."""

    insert = find = fail = get = cancel = ending = staticmethod(refuse)


@pytest.fixture
def no_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building aio's Redis client, using the sync store or building a chain fails the test."""
    monkeypatch.setattr(deps, "settings", lambda: SETTINGS)
    monkeypatch.setattr(deps, "job_store", RefusingStore)
    for module in (aio, api):
        monkeypatch.setattr(module, "pipeline_signature", refuse)
        monkeypatch.setattr(module, "adoption_signature", refuse)
    monkeypatch.setattr(aio, "_client_for", refuse)


# --- refusals, before any I/O -----------------------------------------------------------------

REFUSED: dict[str, tuple[str, tuple[Any, ...], dict[str, Any], str]] = {
    "video_url": ("submit_lipsync", ("ftp://x/v.mp4", AUDIO), {}, "video_url"),
    "webhook_url": ("submit_lipsync", (VIDEO, AUDIO, "https://u:p@h/x"), {}, "webhook_url"),
    "notify_url": ("submit_lipsync", (VIDEO, AUDIO), {"notify_url": "ftp://h/x"}, "notify_url"),
    "on_complete": ("submit_lipsync", (VIDEO, AUDIO), {"on_complete": {"no": 1}}, "on_complete"),
    "idempotency_key": (
        "submit_lipsync",
        (VIDEO, AUDIO),
        {"idempotency_key": "k" * 256},
        "idempotency_key",
    ),
    "metadata": (
        "submit_lipsync",
        (VIDEO, AUDIO),
        {"metadata": {str(n): "v" for n in range(51)}},
        "metadata",
    ),
    "archive_key": ("submit_lipsync", (VIDEO, AUDIO), {"archive_key": "a/../b"}, "archive_key"),
    "akool_id": ("archive_akool_job", ("not an id!",), {}, "akool_id"),
    "adopted_archive_key": ("archive_akool_job", ("abc",), {"archive_key": "/x"}, "archive_key"),
    "find_key": ("find_job", ("",), {}, "idempotency_key"),
}


@pytest.mark.parametrize("case", REFUSED.values(), ids=REFUSED.keys())
def test_a_refused_argument_is_the_sync_apis_value_error_and_nothing_reaches_redis(
    case: tuple[str, tuple[Any, ...], dict[str, Any], str], no_io: None
) -> None:
    name, args, kwargs, argument = case
    with pytest.raises(ValueError, match=argument) as refused:
        run(getattr(aio, name)(*args, **kwargs))
    with pytest.raises(ValueError) as sync_refused:
        getattr(api, name)(*args, **kwargs)
    assert str(refused.value) == str(sync_refused.value)


@pytest.mark.parametrize("timeout", [-1.0, float("nan"), float("inf")])
def test_wait_refuses_a_timeout_that_is_not_a_finite_positive_number_before_any_io(
    timeout: float, no_io: None
) -> None:
    with pytest.raises(ValueError, match="timeout"):
        run(aio.wait_for_job(new_job_id(), timeout))


# --- publishing ------------------------------------------------------------------------------


def test_a_new_jobs_chain_is_published_from_a_worker_thread_not_the_loops(seams: Seams) -> None:
    job_id = run(aio.submit_lipsync(VIDEO, AUDIO))
    assert seams.redis.created == [job_id]
    [(published, thread)] = seams.published
    assert published == job_id
    assert thread != threading.main_thread().name


def test_a_failed_publish_fails_the_job_in_the_worker_thread_and_raises(seams: Seams) -> None:
    seams.publish_error = ConnectionRefusedError("broker away")
    with pytest.raises(ConnectionRefusedError):
        run(aio.submit_lipsync(VIDEO, AUDIO))
    [job_id] = seams.redis.created
    [(failed, error, thread)] = seams.failed
    assert (failed, error) == (job_id, messages.not_queued(seams.publish_error))
    assert thread != threading.main_thread().name


def test_at_most_a_few_threads_publish_at_once(seams: Seams) -> None:
    seams.publish_seconds = 0.02

    async def burst() -> list[str]:
        return await asyncio.gather(*(aio.submit_lipsync(VIDEO, AUDIO) for _ in range(12)))

    assert len(set(run(burst()))) == 12
    assert len(seams.published) == 12
    assert seams.most_publishing <= aio.PUBLISH_THREADS


# --- the loop's turns, its client, and Redis' failures -----------------------------------------


def test_at_most_calls_at_once_calls_of_a_loop_talk_to_redis_at_once(seams: Seams) -> None:
    calls = aio.CALLS_AT_ONCE * 4

    async def burst() -> list[Any]:
        return await asyncio.gather(*(aio.get_job(new_job_id()) for _ in range(calls)))

    assert len(run(burst())) == calls
    assert seams.redis.most_in_flight == aio.CALLS_AT_ONCE


def test_each_event_loop_has_a_client_of_its_own_built_again_when_the_settings_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    current = [SETTINGS]
    monkeypatch.setattr(deps, "settings", lambda: current[0])
    built: list[FakeRedis] = []

    def client_for(settings: Settings) -> FakeRedis:
        built.append(FakeRedis())
        return built[-1]

    monkeypatch.setattr(aio, "_client_for", client_for)

    async def twice() -> bool:
        return (await aio._redis()) is (await aio._redis())

    assert run(twice()) and run(twice())
    assert len(built) == 2
    assert all(client.closed for client in built)  # by close()

    async def after_new_settings() -> FakeRedis:
        first = (await aio._redis()).client
        current[0] = load_settings({})  # as after deps.forget()
        assert (await aio._redis()).client is not first
        return first

    assert run(after_new_settings()).closed


SENTINEL_ENV = {
    "REDIS_URL": ";".join(f"sentinel://:m4ster-pw@10.0.0.{n}:2637{n}/4" for n in (1, 2, 3)),
    "REDIS_SENTINEL_MASTER": "lipsync",
    "REDIS_SENTINEL_PASSWORD": "s3ntinel-pw",
}


def test_behind_sentinel_the_client_is_the_named_masters_with_the_sync_clients_options() -> None:
    async def built() -> tuple[dict[str, Any], Any, list[dict[str, Any]]]:
        client = aio._client_for(load_settings(SENTINEL_ENV))
        pool = client.connection_pool
        sentinels = [s.connection_pool.connection_kwargs for s in pool.sentinel_manager.sentinels]
        await client.aclose()
        return dict(pool.connection_kwargs), pool, sentinels

    kwargs, pool, sentinels = asyncio.run(built())
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "lipsync" and pool.is_master
    assert (kwargs["db"], kwargs["password"]) == (4, "m4ster-pw")
    for name, value in deps.REDIS_CONNECTION_OPTIONS.items():
        assert kwargs[name] == value, name
    assert [(s["host"], s["password"]) for s in sentinels] == [
        (f"10.0.0.{n}", "s3ntinel-pw") for n in (1, 2, 3)
    ]


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port bound but not listening: connections to it are refused."""
    with socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        yield bound.getsockname()[1]


CALLS: dict[str, Callable[[], Coroutine[Any, Any, Any]]] = {
    "submit_lipsync": lambda: aio.submit_lipsync(VIDEO, AUDIO),
    "get_job": lambda: aio.get_job(new_job_id()),
    "find_job": lambda: aio.find_job("order-17"),
    "cancel_job": lambda: aio.cancel_job(new_job_id()),
    "wait_for_job": lambda: aio.wait_for_job(new_job_id(), 5),
}


@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
def test_an_unreachable_redis_is_store_unavailable_caused_by_redis_error(
    call: Callable[[], Coroutine[Any, Any, Any]],
    refusing_port: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = load_settings({"REDIS_URL": f"redis://127.0.0.1:{refusing_port}/0"})
    monkeypatch.setattr(deps, "settings", lambda: settings)
    with pytest.raises(StoreUnavailable, match="REDIS_URL") as caught:
        run(call())
    assert isinstance(caught.value.__cause__, redis.ConnectionError)


def test_a_key_of_another_type_where_a_record_belongs_is_a_corrupt_record(seams: Seams) -> None:
    seams.redis.failure = redis.ResponseError("WRONGTYPE Operation against a key")
    job_id = new_job_id()
    with pytest.raises(CorruptRecord) as caught:
        run(aio.get_job(job_id))
    assert caught.value.key == keys.job(job_id)


def test_cancelling_a_job_with_no_whole_record_is_a_key_error(seams: Seams) -> None:
    seams.redis.update_answer = -1
    with pytest.raises(KeyError):
        run(aio.cancel_job(new_job_id()))
    assert seams.published == []
