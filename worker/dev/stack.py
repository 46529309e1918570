"""A private local stack of real processes: redis-server, moto's S3 server, the Akool
simulator and Celery workers, each on a free loopback port in a temporary directory.

Used by `lipsync demo` and by the integration tests. Every wait is bounded; every process
is stopped (and its directory removed) on exit. `python -m worker.dev.stack` (`make stack`)
runs the services in the foreground for a worker started by hand (`make run`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import requests

from worker.deps import s3_client
from worker.dev.processes import Process, free_port, port_open, wait_until

START_TIMEOUT_SECONDS = 30.0
SIM_API_KEY = "sim-api-key"
SIM_CLIENT_ID = "sim-client-id"
SIM_CLIENT_SECRET = "sim-client-secret"  # noqa: S105 - the simulator's fake credential
BUCKET = "lipsync-archive"
CHECKOUT = Path(__file__).resolve().parents[2]
ENV_FILE = Path(".demo") / "stack.env"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def redis_config_candidates() -> list[Path]:
    """Where the project's redis.conf may be: a checkout's, then the one a wheel installs."""
    return [
        CHECKOUT / "config" / "redis.conf",
        Path(sys.prefix) / "share" / "lipsync-worker" / "redis.conf",
    ]


def find_redis_config(candidates: Sequence[Path] | None = None) -> Path:
    """The first of `candidates` (default: redis_config_candidates()) that is a file."""
    paths = list(candidates) if candidates is not None else redis_config_candidates()
    for path in paths:
        if path.is_file():
            return path
    looked = ", ".join(str(path) for path in paths)
    raise RuntimeError(
        f"the project's redis.conf is missing (looked in {looked}): run from a checkout, "
        "or reinstall lipsync-worker from its wheel, which installs it under share/"
    )


class RedisServer:
    """A private redis-server run with the project's redis.conf (AOF on) in `directory`;
    `extra_args` come last (e.g. `--replicaof 127.0.0.1 <port>` for a replica).

    A server Sentinel manages must get `config`, a copy of redis.conf of its own: Sentinel
    sends CONFIG REWRITE when it promotes or repoints a server, which rewrites that file.
    """

    def __init__(
        self,
        directory: Path,
        *,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        config: Path | None = None,
    ) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.extra_args = list(extra_args)
        self.config = config
        self.process: Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def argv(self) -> list[str]:
        """config/redis.conf, then only where this server listens and keeps its files, and 64
        databases (the integration tests take one per deployment)."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        # Nothing of the file is overridden: the tests run the production configuration. The
        # fault tests restart Redis and need every acknowledged write to survive: with the
        # file's AOF they do, since Redis writes and fsyncs the AOF before exiting on SIGTERM.
        # `--appendfsync always` would add safety only against a machine crash (or a kill -9
        # while a slow fsync holds AOF writes back), which no test does.
        machine = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        local = ["--daemonize", "no", "--databases", "64"]
        config = self.config or find_redis_config()
        return [binary, str(config), *machine, *local, *self.extra_args]

    def start(self) -> RedisServer:
        """Start it, and return once it serves: a restarted server accepts connections
        while it loads its AOF, answering LOADING to every command until it has."""
        self.process = Process("redis", self.argv(), self.directory / "redis.log").start()
        wait_until(self.serving, START_TIMEOUT_SECONDS, "redis-server")
        return self

    def serving(self) -> bool:
        """True when the server answers PING: a pong, or a refusal for want of a password
        (it serves; the caller has one). Not while it answers LOADING, or refuses."""
        if not port_open(self.port):
            return False
        client = redis.Redis(port=self.port, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            return bool(client.ping())
        except (redis.AuthenticationError, redis.ResponseError):  # NOAUTH: it serves
            return True
        except redis.ConnectionError:  # LOADING (BusyLoadingError is one), or refused
            return False
        finally:
            client.close()

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
    """The Akool simulator (worker.dev.simulator) as a separate process."""

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
            "worker.dev.simulator",
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

    def outage(self, seconds: float, status: int = 503) -> None:
        """Every Akool request answers HTTP `status` for `seconds` from now (0: end it)."""
        body = {"status": status, "seconds": seconds}
        requests.post(self.url + "/_sim/outage", json=body, timeout=5).raise_for_status()


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
    command = argv or worker_argv(queues, concurrency=concurrency, name=name)
    return start_workers(directory, env, {name: command})[0]


def start_workers(
    directory: Path, env: Mapping[str, str], commands: Mapping[str, list[str]]
) -> list[Process]:
    """Start Celery workers side by side (name -> command line, each logging to
    `<name>.log`) and wait until each says it is ready; in the order given."""
    processes = [
        Process(name, argv, directory / f"{name}.log", env=env).start()
        for name, argv in commands.items()
    ]

    for process in processes:

        def ready(process: Process = process) -> bool:
            if not process.alive:
                raise RuntimeError(f"worker exited at start:\n{process.log_text()[-3000:]}")
            return " ready." in process.log_text()

        wait_until(ready, START_TIMEOUT_SECONDS * 2, f"worker {process.name}")
    return processes


@dataclass
class Stack:
    """The running services and the environment a worker or client needs to use them."""

    directory: Path
    redis: RedisServer
    s3: S3Server
    simulator: SimulatorServer
    env: dict[str, str]

    def s3_client(self) -> Any:
        """A boto3 client of the stack's S3 server."""
        return s3_client(self.s3.url)


def service_env(redis_url: str, s3_url: str, akool_url: str) -> dict[str, str]:
    """Only the variables that point a worker or a client at the local services."""
    return {
        "REDIS_URL": redis_url,
        "AKOOL_BASE_URL": akool_url,
        "AKOOL_API_KEY": SIM_API_KEY,
        "ARCHIVE_BUCKET": BUCKET,
        "ARCHIVE_PREFIX": "lipsync/",
        # Exactly 127.0.0.1: no wildcard ever allows a loopback address.
        "ARCHIVE_ALLOWED_HOSTS": "127.0.0.1,localhost",
        # The tests' notification sinks listen on loopback, which only an exact entry allows.
        "NOTIFY_ALLOWED_HOSTS": "127.0.0.1",
        "S3_ENDPOINT_URL": s3_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "POLL_INITIAL_SECONDS": "0.2",
        "POLL_MAX_SECONDS": "1",
        "POLL_TIMEOUT_SECONDS": "120",
        "PYTHONUNBUFFERED": "1",
    }


def stack_env(redis_url: str, s3_url: str, akool_url: str, **overrides: str) -> dict[str, str]:
    """This process's environment, pointed at the local services (for child processes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AKOOL_", "ARCHIVE_"))}
    env.update(service_env(redis_url, s3_url, akool_url))
    env.pop("AWS_PROFILE", None)
    env.update(overrides)
    return env


@contextlib.contextmanager
def local_stack(*, size: int | None = None) -> Iterator[Stack]:
    """Start redis-server, the S3 server and the simulator; stop them all on exit."""
    directory = Path(tempfile.mkdtemp(prefix="lipsync-stack-"))
    services: list[Any] = []
    try:
        redis_server = RedisServer(directory).start()
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


def write_env_file(path: Path, env: Mapping[str, str]) -> None:
    """KEY=value lines that both honcho's `--env` and a POSIX shell's `.` read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"{key}={shlex.quote(value)}" for key, value in env.items()]
    header = "# Written by python -m worker.dev.stack; removed when it stops."
    path.write_text("\n".join([header, *lines]) + "\n")


def _stop_on_signal(signum: int, frame: Any) -> None:
    # SIGTERM and SIGHUP stop the stack as Ctrl-C does, through local_stack's cleanup; later
    # signals are ignored so that they cannot cut that cleanup short and leave servers running.
    for other in STOP_SIGNALS:
        signal.signal(other, signal.SIG_IGN)
    raise KeyboardInterrupt


def _wait_while_running(stack: Stack) -> None:
    """Sleep until interrupted; raise if a service dies, so the others are stopped too."""
    processes = {
        "redis-server": stack.redis.process,
        "S3 server": stack.s3.process,
        "simulator": stack.simulator.process,
    }
    while True:
        for name, process in processes.items():
            if process is not None and not process.alive:
                raise RuntimeError(f"{name} exited:\n{process.log_text()[-2000:]}")
        time.sleep(1)


def main(argv: list[str] | None = None) -> None:
    """Run the local stack in the foreground until Ctrl-C or SIGTERM, writing the
    environment a worker needs to an env file (removed again on exit)."""
    parser = argparse.ArgumentParser(prog="python -m worker.dev.stack", description=main.__doc__)
    parser.add_argument("--env-file", type=Path, default=ENV_FILE, help="default: %(default)s")
    env_file = parser.parse_args(argv).env_file
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop_on_signal)
    try:
        print("Starting redis-server, the S3 server and the Akool simulator...", flush=True)
        with local_stack() as stack:
            write_env_file(
                env_file, service_env(stack.redis.url, stack.s3.url, stack.simulator.url)
            )
            try:
                print(f"Logs in {stack.directory}. Environment, in {env_file}:", flush=True)
                print(env_file.read_text(), end="", flush=True)
                print("Now `make run` in another terminal. Ctrl-C stops the stack.", flush=True)
                _wait_while_running(stack)
            finally:
                env_file.unlink(missing_ok=True)
    except KeyboardInterrupt:
        print("Stopped.", flush=True)


if __name__ == "__main__":
    main()
