"""Tests of worker.config.preflight with a Redis stand-in: which servers a process refuses to keep
jobs in (evicting ones, forgetful ones), and when it only warns."""

from __future__ import annotations

import logging

import pytest
import redis

from worker.config.preflight import check_redis_keeps_jobs
from worker.errors import ConfigError

SAFE = {"maxmemory-policy": "noeviction", "appendonly": "yes", "save": ""}


class FakeRedis:
    """Answers CONFIG GET from `config`; refuses it like a managed Redis when None."""

    def __init__(self, config: dict[str, str] | None) -> None:
        self.config = config
        self.connection_pool = object()  # not a Sentinel pool: no replicas to check

    def config_get(self, name: str) -> dict[str, str]:
        if self.config is None:
            raise redis.ResponseError("unknown command 'CONFIG'")
        return {name: self.config[name]} if name in self.config else {}


def check(config: dict[str, str] | None) -> None:
    check_redis_keeps_jobs(FakeRedis(config))  # type: ignore[arg-type]


def test_a_redis_with_aof_and_no_eviction_is_accepted() -> None:
    check(SAFE)


def test_a_redis_that_keeps_nothing_on_disk_is_refused_naming_appendonly() -> None:
    with pytest.raises(ConfigError, match="appendonly") as info:
        check({**SAFE, "appendonly": "no", "save": ""})
    assert "restart" in str(info.value)


def test_rdb_snapshots_alone_are_accepted_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="worker.config.preflight"):
        check({**SAFE, "appendonly": "no", "save": "3600 1 300 100"})
    assert "RDB snapshots only" in caplog.text and "appendonly yes" in caplog.text


def test_a_redis_that_refuses_config_get_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="worker.config.preflight"):
        check(None)
    assert "CONFIG GET refused" in caplog.text and "appendonly yes" in caplog.text


def test_an_evicting_redis_is_refused_before_its_persistence_is_looked_at() -> None:
    with pytest.raises(ConfigError, match="maxmemory-policy is volatile-lru"):
        check({**SAFE, "maxmemory-policy": "volatile-lru", "appendonly": "no"})
