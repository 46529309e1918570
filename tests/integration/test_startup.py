"""What each process says when it cannot run: one line naming what to fix, at start.

Real processes (the Procfile's commands and the `lipsync` console script); nothing listens
on the Redis port they are given, so none of them can reach a server by accident.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import procfile_worker_env
from worker.dev.demo import procfile_argv
from worker.dev.stack import RedisServer, free_port

pytestmark = pytest.mark.integration
START_TIMEOUT_SECONDS = 60


def _env(**values: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("AKOOL_", "ARCHIVE_"))}
    keep["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    keep.update(values)
    return procfile_worker_env(keep)


def _run(
    argv: list[str], env: dict[str, str], cwd: Path, timeout: float = START_TIMEOUT_SECONDS
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def _lines(output: str) -> list[str]:
    """Output lines, without the warnings Celery prints for running as root."""
    return [
        line
        for line in output.splitlines()
        if line.strip() and "ROOT_DISCOURAGED" not in line and not _root_warning(line)
    ]


def _root_warning(line: str) -> bool:
    return any(
        marker in line
        for marker in (
            "SecurityWarning",
            "superuser privileges",
            "absolutely not recommended",
            "User information",
            "Please specify a different user",
        )
    )


def test_a_worker_without_archive_bucket_exits_at_start_naming_it(tmp_path: Path) -> None:
    argv = procfile_argv("worker")
    assert argv is not None
    done = _run(argv, _env(AKOOL_API_KEY="key"), tmp_path)
    assert done.returncode != 0
    assert "ARCHIVE_BUCKET is not set" in done.stderr
    assert "ready" not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


def test_a_worker_with_a_malformed_redis_url_says_so_in_one_line(tmp_path: Path) -> None:
    argv = procfile_argv("worker")
    assert argv is not None
    done = _run(
        argv, _env(REDIS_URL="bogus://cache", AKOOL_API_KEY="k", ARCHIVE_BUCKET="b"), tmp_path
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert [line for line in _lines(done.stderr) if "REDIS_URL" in line] == [
        "lipsync: REDIS_URL must be a redis/rediss/unix URL with a host"
        " (got scheme 'bogus', host 'cache')"
    ]


@pytest.mark.parametrize("command", [["jobs"], ["status", "0" * 32]])
def test_the_cli_says_in_one_line_that_redis_cannot_be_reached(
    command: list[str], tmp_path: Path
) -> None:
    lipsync = str(Path(sys.executable).parent / "lipsync")
    done = _run([lipsync, *command], _env(), tmp_path)
    assert done.returncode != 0
    assert _lines(done.stderr) == [
        "lipsync: the job store could not be reached: is Redis running at REDIS_URL?"
    ]


def test_a_misspelled_setting_is_named_with_the_one_it_probably_meant(tmp_path: Path) -> None:
    lipsync = str(Path(sys.executable).parent / "lipsync")
    done = _run([lipsync, "jobs"], _env(POLL_INTIAL_SECONDS="3"), tmp_path)
    assert "POLL_INTIAL_SECONDS is set but is not a lipsync-worker setting" in done.stderr
    assert "did you mean POLL_INITIAL_SECONDS?" in done.stderr


# --- a Redis that may evict job records ---------------------------------------------------------


@pytest.fixture
def evicting_redis(redis_server: RedisServer) -> Iterator[str]:
    """The module's redis-server switched to volatile-lru, and back afterwards."""
    client = redis.Redis.from_url(redis_server.url)
    client.config_set("maxmemory-policy", "volatile-lru")
    try:
        yield redis_server.url
    finally:
        client.config_set("maxmemory-policy", "noeviction")
        client.close()


def refusal(process: str, redis_url: str, cwd: Path) -> str:
    """The Procfile's `process` started against `redis_url`: it must exit by itself, without
    serving (a process that served would outlive the timeout); what it said."""
    argv = procfile_argv(process)
    assert argv is not None
    env = _env(REDIS_URL=redis_url, AKOOL_API_KEY="k", ARCHIVE_BUCKET="b")
    done = _run(argv, env, cwd)
    assert done.returncode != 0
    assert "ready" not in done.stdout + done.stderr
    return done.stderr


@pytest.mark.parametrize("process", ["worker", "beat", "web"])
def test_a_process_refuses_a_redis_that_may_evict_job_records(
    process: str, evicting_redis: str, tmp_path: Path
) -> None:
    said = refusal(process, evicting_redis, tmp_path)
    assert "maxmemory-policy is volatile-lru" in said
    assert "noeviction" in said


# --- a Redis that keeps nothing on disk ---------------------------------------------------------


@pytest.fixture(scope="module")
def forgetful_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server started as `redis-server --appendonly no --save ""`: neither AOF nor
    RDB snapshots (the rest of config/redis.conf as usual)."""
    directory = tmp_path_factory.mktemp("forgetful-redis")
    server = RedisServer(directory, extra_args=["--appendonly", "no", "--save", ""]).start()
    try:
        yield server.url
    finally:
        server.stop(signal.SIGKILL)  # it keeps nothing: no need to let it write anything


@pytest.mark.parametrize("process", ["worker", "beat", "web"])
def test_a_process_refuses_a_redis_that_keeps_nothing_on_disk(
    process: str, forgetful_redis: str, tmp_path: Path
) -> None:
    said = refusal(process, forgetful_redis, tmp_path)
    assert "keeps nothing on disk" in said and "appendonly" in said
