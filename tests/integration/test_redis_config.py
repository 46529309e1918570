"""One Redis configuration, the one tested: config/redis.conf runs the tests' redis-server and
docker-compose.yml's redis service alike."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from worker.dev.stack import RedisServer, find_redis_config

ROOT = Path(__file__).resolve().parents[2]
REDIS_CONF = ROOT / "config" / "redis.conf"
# What each place that starts Redis gives on its command line, never in the file.
MACHINE_SPECIFIC = {"port", "bind", "dir", "daemonize", "databases", "unixsocket", "logfile"}

pytestmark = pytest.mark.integration


def directives(conf: Path) -> dict[str, str]:
    """The file's `name value` lines, comments and blank lines left out."""
    out = {}
    for line in conf.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.strip().partition(" ")
            out[name.lower()] = " ".join(shlex.split(value))
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    started = RedisServer(tmp_path_factory.mktemp("redis")).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def client(server: RedisServer) -> Iterator[redis.Redis]:
    connection = redis.Redis(port=server.port, decode_responses=True, socket_timeout=10)
    yield connection
    connection.close()


def config_get(client: redis.Redis, name: str) -> str:
    return str(client.config_get(name)[name])


def test_the_stack_runs_redis_with_the_checkouts_config_file(client: redis.Redis) -> None:
    assert find_redis_config() == REDIS_CONF
    assert client.info("server")["config_file"] == str(REDIS_CONF)


def test_the_stacks_redis_keeps_an_append_only_file_and_never_evicts(
    client: redis.Redis,
) -> None:
    assert config_get(client, "appendonly") == "yes"
    assert config_get(client, "maxmemory-policy") == "noeviction"


def test_every_setting_of_the_file_is_what_the_stacks_redis_runs_with(
    client: redis.Redis,
) -> None:
    running = {name: config_get(client, name) for name in directives(REDIS_CONF)}
    assert running == directives(REDIS_CONF)


def test_the_file_says_nothing_machine_specific() -> None:
    assert set(directives(REDIS_CONF)) & MACHINE_SPECIFIC == set()


def test_the_stack_overrides_nothing_the_file_sets(server: RedisServer) -> None:
    argv = server.argv()
    assert argv[1] == str(REDIS_CONF)
    flags = {arg.removeprefix("--") for arg in argv[2:] if arg.startswith("--")}
    assert flags & set(directives(REDIS_CONF)) == set()


def test_docker_compose_runs_redis_with_the_same_file() -> None:
    service: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][
        "redis"
    ]
    command = service["command"]
    assert command[0] == "redis-server" and len(command) == 2, command
    mounts = [volume.split(":") for volume in service["volumes"]]
    assert ["./config/redis.conf", command[1], "ro"] in mounts


def test_a_missing_config_file_is_reported_with_where_it_was_looked_for(
    tmp_path: Path,
) -> None:
    candidates = [tmp_path / "checkout" / "redis.conf", tmp_path / "share" / "redis.conf"]
    with pytest.raises(RuntimeError, match="redis.conf is missing") as raised:
        find_redis_config(candidates)
    assert all(str(path) in str(raised.value) for path in candidates)
