"""Tests of worker.metrics without Redis: what one scrape asks Redis for, and how it reads the
answers. (tests/integration/test_metrics_scrape.py counts the commands a real Redis runs.)"""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest

from worker import metrics
from worker.metrics import COUNTED_SINCE_FIELD
from worker.names import QUEUES
from worker.status import JobStatus
from worker.store import keys

NOW = 1_710_757_981.0
COUNTED = {b"queued": b"2", b"submitted": b"1", b"processing": b"4", b"counted_since": b"1"}


class FakePipeline:
    """Records the commands of one pipeline and answers them from `answers`."""

    def __init__(self, redis: FakeRedis) -> None:
        self._redis = redis
        self.commands: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        def command(*args: Any, **_: Any) -> None:
            self.commands.append((name, args))

        return command

    def execute(self) -> list[Any]:
        self._redis.round_trips += 1
        self._redis.commands += len(self.commands)
        return [self._redis.answer(name, args) for name, args in self.commands]


class FakeRedis:
    """Just what a scrape uses: pipelines, a script, EXISTS, ZREM and ZRANGE, counted."""

    def __init__(self, counts: dict[bytes, bytes], head: list[tuple[bytes, float]]) -> None:
        self.counts = counts
        self.unarchived = head
        self.alive: set[str] = set()
        self.round_trips = self.commands = self.scripts_run = 0
        # Jobs waiting by family, and the head of each family's waiting set.
        self.waiting: dict[bytes, bytes] = {}
        self.waiting_heads: dict[str, list[tuple[bytes, float]]] = {}

    def register_script(self, _: str) -> Any:
        def run(**_: Any) -> int:
            self.round_trips += 1
            self.scripts_run += 1
            self.counts = {**COUNTED, b"queued": b"7"}
            return 1

        return run

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self)

    def answer(self, name: str, args: tuple[Any, ...]) -> Any:
        if name == "hgetall" and args[0] == keys.METRICS_WAITING:
            return self.waiting
        if name == "hgetall" and args[0] == keys.METRICS_JOBS_BY_KIND:
            counted = COUNTED_SINCE_FIELD in self.counts
            return {COUNTED_SINCE_FIELD: b"1", b"lipsync:queued": b"2"} if counted else {}
        if name == "hgetall":
            return self.counts if args[0] == keys.METRICS_JOBS_BY_STATUS else {}
        if name == "zrange" and args[0].startswith(keys.WAITING_PREFIX):
            return self.waiting_heads.get(args[0].removeprefix(keys.WAITING_PREFIX), [])
        if name == "zrange":
            return self.unarchived[:1]
        return {"get": None, "zcount": 3, "llen": 5}[name]

    def exists(self, key: str) -> int:
        self.round_trips += 1
        self.commands += 1
        return int(key.removeprefix(keys.JOB_PREFIX) in self.alive)

    def zrem(self, _: str, member: bytes) -> None:
        self.round_trips += 1
        self.commands += 1
        self.unarchived = [m for m in self.unarchived if m[0] != member]

    def zrange(self, *_: Any, **__: Any) -> list[tuple[bytes, float]]:
        self.round_trips += 1
        self.commands += 1
        return self.unarchived[:1]


def test_a_scrape_reads_everything_in_one_round_trip_of_under_20_commands() -> None:
    redis = FakeRedis(COUNTED, [])

    snapshot = metrics.FleetCollector(redis).read(NOW)

    assert (redis.round_trips, redis.commands) == (1, metrics.SCRAPE_COMMANDS)
    assert metrics.SCRAPE_COMMANDS < 20
    assert snapshot.jobs["processing"] == 4 and snapshot.jobs["archived"] == 0
    assert snapshot.queues == dict.fromkeys(QUEUES, 5)
    assert snapshot.at_risk == 3


def test_a_redis_without_kept_counts_has_its_jobs_counted_once_then_read_again() -> None:
    redis = FakeRedis({b"queued": b"-1"}, [])

    snapshot = metrics.FleetCollector(redis).read(NOW)

    assert redis.scripts_run == 1
    assert snapshot.jobs["queued"] == 7


def test_the_oldest_unarchived_age_is_its_head_s_when_its_record_exists() -> None:
    redis = FakeRedis(COUNTED, [(b"a" * 32, NOW - 120.0)])
    redis.alive.add("a" * 32)

    assert metrics.FleetCollector(redis).read(NOW).oldest_unarchived_age == 120.0


def test_dead_heads_of_the_unarchived_set_are_dropped_a_few_at_most_per_scrape() -> None:
    dead = [(bytes([97 + i]) * 32, NOW - 100.0 * (5 - i)) for i in range(5)]
    redis = FakeRedis(COUNTED, dead)

    snapshot = metrics.FleetCollector(redis).read(NOW)

    assert snapshot.oldest_unarchived_age == 0.0
    assert len(redis.unarchived) == 5 - metrics.UNARCHIVED_PROBES
    assert redis.commands <= metrics.SCRAPE_COMMANDS + 3 * metrics.UNARCHIVED_PROBES


def test_polls_waiting_are_the_jobs_submitted_or_processing() -> None:
    counts = metrics._job_counts(COUNTED)
    family = metrics._polls_waiting(counts)

    assert family.samples[0].value == 5
    assert set(counts) == {s.value for s in JobStatus}  # counted_since is no status


def test_serving_a_taken_metrics_port_logs_an_error_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.ERROR, logger="worker.metrics"):
            served = metrics.serve(FakeRedis(COUNTED, []), port, addr="127.0.0.1")

    assert served is False
    assert f"METRICS_PORT {port}" in caplog.records[-1].getMessage()


def test_jobs_waiting_are_shown_by_family_with_the_oldest_wait() -> None:
    redis = FakeRedis(COUNTED, [])
    redis.waiting = {b"akool": b"3", b"file": b"1"}
    redis.waiting_heads = {"akool": [(b"a" * 32, NOW - 700)], "file": [(b"b" * 32, NOW - 60)]}
    snapshot = metrics.FleetCollector(redis).read(NOW)

    waiting = list(metrics._waiting(snapshot.waiting or {}, NOW))
    counts = {s.labels["on"]: s.value for s in waiting[0].samples}
    oldest = {s.labels["on"]: s.value for s in waiting[1].samples}
    assert counts == {"akool": 3, "file": 1, "download": 0, "storage": 0}
    assert oldest["akool"] == pytest.approx(700.0) and oldest["storage"] == 0.0


def test_jobs_are_shown_by_kind_beside_the_status_counts() -> None:
    redis = FakeRedis(COUNTED, [])
    families = {family.name: family for family in metrics.FleetCollector(redis).collect()}
    [sample] = families["lipsync_jobs_by_kind"].samples
    assert (sample.labels, sample.value) == ({"kind": "lipsync", "status": "queued"}, 2)
    assert {s.labels["status"] for s in families["lipsync_jobs"].samples} >= {"queued"}
