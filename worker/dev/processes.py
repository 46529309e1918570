"""Child processes for the local rig: free ports, bounded waits, and a process whose output
goes to a log file and whose whole group is stopped on exit."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

STOP_TIMEOUT_SECONDS = 10.0


# The rig's servers listen on ports below the kernel's ephemeral range (Linux starts it at
# 32768, macOS at 49152): there, no outgoing connection of another process can take a port
# between the moment it is chosen and the moment its server binds it.
RIG_PORTS = range(20000, 32000)
# Each process walks its own stretch of RIG_PORTS, one port after another, so processes
# started side by side (the suite's pytest-xdist workers, the bench's parts) do not choose
# the same port, and one process never hands out a port twice.
PORTS_PER_PROCESS = 1000


def _first_port() -> int:
    """Where this process's stretch starts: by its pytest-xdist worker number in the suite
    (the stretches of gw0, gw1, ... never overlap), else by its process id."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "").removeprefix("gw")
    slot = int(worker) + 1 if worker.isdigit() else os.getpid()
    return (slot % (len(RIG_PORTS) // PORTS_PER_PROCESS)) * PORTS_PER_PROCESS


_ports = itertools.count(_first_port())


def free_port() -> int:
    """A TCP port on 127.0.0.1, free when chosen, not handed out before by this process."""
    for _ in range(len(RIG_PORTS)):
        port = RIG_PORTS.start + next(_ports) % len(RIG_PORTS)
        with socket.socket() as s, contextlib.suppress(OSError):
            s.bind(("127.0.0.1", port))
            return port
    raise OSError(f"no free port in {RIG_PORTS}")


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
        stop_all([self], sig)

    def _reap(self, deadline: float) -> None:
        """Wait for the process until `deadline` (monotonic), then kill what is left."""
        if self.proc is not None:
            try:
                self.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.send(signal.SIGKILL)
                self.proc.wait(STOP_TIMEOUT_SECONDS)
            self.send(signal.SIGKILL)  # children left behind by a killed parent
        if self._log is not None:
            self._log.close()
            self._log = None


def stop_all(processes: Iterable[Process | None], sig: int = signal.SIGTERM) -> None:
    """Stop processes side by side: each is sent `sig` at once, then all are waited for
    (SIGKILL for what still runs after STOP_TIMEOUT_SECONDS)."""
    running = [process for process in processes if process is not None]
    for process in running:
        if process.proc is not None:
            process.send(sig)
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    for process in running:
        process._reap(deadline)
