"""Local processes for the Celery benches: a private stack (worker.dev.stack) plus helpers to
start a worker of any app module, enqueue or seed jobs from a child process and wait, all
bounded; and the lock that keeps servers started side by side off each other's ports."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import requests

from bench.common import ROOT, child_env
from worker import names
from worker.dev.stack import (
    BUCKET,
    START_TIMEOUT_SECONDS,
    Process,
    RedisServer,
    S3Server,
    SimulatorServer,
    Stack,
    stack_env,
    start_worker,
    wait_until,
)

QUEUES = ",".join(names.QUEUES)
# Held from picking a port to listening on it. free_port() answers a port that was free a
# moment ago, and the kernel soon answers the same one again: servers started side by side
# (the parts and runs of a smoke run) would otherwise share a port.
PORTS = threading.Lock()


def bench_env(stack: Stack, **overrides: str) -> dict[str, str]:
    """The stack's worker environment with production poll settings and the bench's
    overrides (AKOOL_MAX_RPS...)."""
    env = child_env()
    env.update(stack.env)
    env.update(
        {
            "POLL_INITIAL_SECONDS": "5",
            "POLL_MAX_SECONDS": "60",
            "POLL_TIMEOUT_SECONDS": "7200",
            "AKOOL_MAX_RPS": "1000",
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(overrides)
    return env


def worker(
    stack: Stack,
    env: dict[str, str],
    *,
    app: str = "worker.celery_app",
    name: str = "bench",
    concurrency: int = 2,
) -> Process:
    """The Procfile's worker command for `app`, started and ready."""
    argv = [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", QUEUES]
    argv += ["--concurrency", str(concurrency), "--loglevel", "INFO", "-n", f"{name}@%h"]
    argv += ["--without-gossip", "--without-mingle"]
    return start_worker(stack.directory, env, name=name, argv=argv)


def _run_module(module: str, args: list[str], env: dict[str, str], timeout: float) -> str:
    """`python -m module args` in a child process; its standard output."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} {args[:2]} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def enqueue(env: dict[str, str], *args: str, timeout: float = 300) -> dict[str, Any]:
    """Run bench.enqueue in a child process; its JSON answer."""
    out = _run_module("bench.enqueue", list(args), env, timeout)
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def seed(
    env: dict[str, str], jobs: int, *, previous: Path | None = None, timeout: float = 300
) -> tuple[float, float]:
    """Run bench.seed with `jobs` jobs (their notional previous polls written to `previous`,
    when given); the epochs it started and ended."""
    if previous is not None:
        env = {**env, "BENCH_SEED_PREVIOUS": str(previous)}
    started = time.time()
    _run_module("bench.seed", [str(jobs)], env, timeout)
    return started, time.time()


def wait_for(check: Callable[[], bool], timeout: float, interval: float = 0.05) -> float | None:
    """Poll `check` until True; the time.time() it became True, or None on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.time()
        time.sleep(interval)
    return None


def log_tail(process: Process, chars: int = 3000) -> str:
    return process.log_text()[-chars:]


@contextlib.contextmanager
def running_worker(
    stack: Stack, env: dict[str, str], *, app: str, name: str, concurrency: int = 2
) -> Iterator[Process]:
    """`worker(...)`, stopped at the end; an error raised inside carries its log's tail."""
    proc = worker(stack, env, app=app, name=name, concurrency=concurrency)
    try:
        yield proc
    except Exception as e:
        raise RuntimeError(f"{name}: {e}\n{log_tail(proc)}") from e
    finally:
        proc.stop()


# moto keeps an object in memory up to this size and spools the rest to a temporary file
# (default: just under 5 MiB). On this machine /tmp is a real disk, and its write-back made
# moto's time for the same 300 MiB upload vary from 2.3 to 4.2 s; in memory it is steadier.
MOTO_BUFFER_BYTES = 2 * 1024**3


class NoDelayS3(S3Server):
    """moto's server started through bench.nodelay (TCP_NODELAY), objects kept in memory."""

    def start(self) -> NoDelayS3:
        argv = [sys.executable, "-m", "bench.nodelay", "moto", "-H", "127.0.0.1"]
        argv += ["-p", str(self.port)]
        env = child_env(MOTO_S3_DEFAULT_KEY_BUFFER_SIZE=str(MOTO_BUFFER_BYTES))
        self.process = Process("s3", argv, self.directory / "s3.log", env=env).start()
        wait_until(
            lambda: requests.get(self.url, timeout=1).status_code < 500,
            START_TIMEOUT_SECONDS,
            "moto S3 server (nodelay)",
        )
        return self


@contextlib.contextmanager
def bench_stack(*, nodelay: bool = True) -> Iterator[Stack]:
    """Like worker.dev.stack.local_stack, optionally with the servers' Nagle delay off."""
    directory = Path(tempfile.mkdtemp(prefix="lipsync-bench-"))
    services: list[Any] = []
    try:
        with PORTS:
            redis_server = RedisServer(directory).start()
            services.append(redis_server)
            s3 = (NoDelayS3 if nodelay else S3Server)(directory).start()
            services.append(s3)
            sim = SimulatorServer(directory).start()
            services.append(sim)
        env = stack_env(redis_server.url, s3.url, sim.url)
        stack = Stack(directory, redis_server, s3, sim, env)
        boto3.client(
            "s3",
            endpoint_url=s3.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's fake credential
            region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)
        yield stack
    finally:
        for service in reversed(services):
            service.stop()
        shutil.rmtree(directory, ignore_errors=True)
