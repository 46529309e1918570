"""A private local stack of real processes: redis-server, moto's S3 server, the Akool
simulator and Celery workers, each on a free loopback port in a temporary directory.

Used by `lipsync demo` and by the integration tests. Every wait is bounded; every process
is stopped (and its directory removed) on exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
SIM_API_KEY = "sim-api-key"
SIM_CLIENT_ID = "sim-client-id"
SIM_CLIENT_SECRET = "sim-client-secret"  # noqa: S105 - the simulator's fake credential
BUCKET = "lipsync-archive"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    """Call `check` until it returns True, or raise TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(interval)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


def port_open(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:port."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Process:
    """A child process whose output goes to a log file."""

    name: str
    argv: list[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> Process:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=dict(self.env) if self.env else None,
            start_new_session=True,
        )
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def send(self, signum: int) -> None:
        """Send a signal to the whole process group (a Celery worker has children)."""
        if self.alive:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signum)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process (SIGKILL after STOP_TIMEOUT_SECONDS) and close its log."""
        if self.proc is not None:
            self.send(sig)
            try:
                self.proc.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.send(signal.SIGKILL)
                self.proc.wait(STOP_TIMEOUT_SECONDS)
            self.send(signal.SIGKILL)  # children left behind by a killed parent
        if self._log is not None:
            self._log.close()
            self._log = None


class RedisServer:
    """A private redis-server; `appendonly` turns on AOF persistence in its directory."""

    def __init__(self, directory: Path, *, port: int | None = None, appendonly: bool = False):
        self.directory = directory
        self.port = port or free_port()
        self.appendonly = appendonly
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        argv = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--daemonize",
            "no",
            "--databases",
            "64",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
        ]
        self.process = Process("redis", argv, self.directory / "redis.log").start()
        wait_until(lambda: port_open(self.port), START_TIMEOUT_SECONDS, "redis-server")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            self.process.stop(sig)

    def restart(self, down_seconds: float = 0.0) -> None:
        """Stop, stay down for `down_seconds`, start again on the same port and directory."""
        self.stop()
        time.sleep(down_seconds)
        self.start()


class S3Server:
    """moto's S3 server (server mode), speaking real HTTP on loopback."""

    def __init__(self, directory: Path, *, port: int | None = None) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> S3Server:
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.process = Process("s3", argv, self.directory / "s3.log").start()
        wait_until(
            lambda: requests.get(self.url, timeout=1).status_code < 500,
            START_TIMEOUT_SECONDS,
            "moto S3 server",
        )
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            self.process.stop(sig)


class SimulatorServer:
    """The Akool simulator (worker.simulator) as a separate process."""

    def __init__(self, directory: Path, *, port: int | None = None, size: int | None = None):
        self.directory = directory
        self.port = port or free_port()
        self.size = size
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SimulatorServer:
        argv = [
            sys.executable,
            "-m",
            "worker.simulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--api-key",
            SIM_API_KEY,
            "--client-id",
            SIM_CLIENT_ID,
            "--client-secret",
            SIM_CLIENT_SECRET,
        ]
        if self.size:
            argv += ["--size", str(self.size)]
        self.process = Process("simulator", argv, self.directory / "simulator.log").start()
        wait_until(
            lambda: requests.get(self.url + "/_sim/stats", timeout=1).ok,
            START_TIMEOUT_SECONDS,
            "Akool simulator",
        )
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            self.process.stop(sig)

    def stats(self) -> dict[str, Any]:
        return dict(requests.get(self.url + "/_sim/stats", timeout=5).json())

    def job(self, akool_id: str) -> dict[str, Any]:
        return dict(requests.get(f"{self.url}/_sim/jobs/{akool_id}", timeout=30).json())


def worker_argv(queues: str, *, concurrency: int = 2, name: str = "worker") -> list[str]:
    """The Procfile's worker command, run with this interpreter."""
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker.celery_app",
        "worker",
        "-Q",
        queues,
        "--concurrency",
        str(concurrency),
        "--loglevel",
        "INFO",
        "-n",
        f"{name}@%h",
        "--without-gossip",
        "--without-mingle",
    ]


def start_worker(
    directory: Path,
    env: Mapping[str, str],
    *,
    queues: str = "lipsync.akool,lipsync.archive",
    concurrency: int = 2,
    name: str = "worker",
    argv: list[str] | None = None,
) -> Process:
    """Start a Celery worker and wait until it says it is ready."""
    log = directory / f"{name}.log"
    process = Process(
        name, argv or worker_argv(queues, concurrency=concurrency, name=name), log, env=env
    ).start()

    def ready() -> bool:
        if not process.alive:
            raise RuntimeError(f"worker exited at start:\n{process.log_text()[-3000:]}")
        return " ready." in process.log_text()

    wait_until(ready, START_TIMEOUT_SECONDS * 2, f"Celery worker {name}")
    return process


@dataclass
class Stack:
    """The running services and the environment a worker or client needs to use them."""

    directory: Path
    redis: RedisServer
    s3: S3Server
    simulator: SimulatorServer
    env: dict[str, str]

    def s3_client(self) -> Any:
        from worker.deps import s3_client

        return s3_client(self.s3.url)


def stack_env(redis_url: str, s3_url: str, akool_url: str, **overrides: str) -> dict[str, str]:
    """The environment that points the worker at the local services."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AKOOL_", "ARCHIVE_"))}
    env.update(
        {
            "REDIS_URL": redis_url,
            "AKOOL_BASE_URL": akool_url,
            "AKOOL_API_KEY": SIM_API_KEY,
            "ARCHIVE_BUCKET": BUCKET,
            "ARCHIVE_PREFIX": "lipsync/",
            "ARCHIVE_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "S3_ENDPOINT_URL": s3_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "POLL_INITIAL_SECONDS": "0.2",
            "POLL_MAX_SECONDS": "1",
            "POLL_TIMEOUT_SECONDS": "120",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.pop("AWS_PROFILE", None)
    env.update(overrides)
    return env


@contextlib.contextmanager
def local_stack(*, appendonly: bool = False, size: int | None = None) -> Iterator[Stack]:
    """Start redis-server, the S3 server and the simulator; stop them all on exit."""
    directory = Path(tempfile.mkdtemp(prefix="lipsync-stack-"))
    services: list[Any] = []
    try:
        redis_server = RedisServer(directory, appendonly=appendonly).start()
        services.append(redis_server)
        s3 = S3Server(directory).start()
        services.append(s3)
        simulator = SimulatorServer(directory, size=size).start()
        services.append(simulator)
        env = stack_env(redis_server.url, s3.url, simulator.url)
        stack = Stack(directory, redis_server, s3, simulator, env)
        _create_bucket(stack)
        yield stack
    finally:
        for service in reversed(services):
            service.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _create_bucket(stack: Stack) -> None:
    with _patched_env(stack.env):
        stack.s3_client().create_bucket(Bucket=BUCKET)


@contextlib.contextmanager
def _patched_env(env: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
