"""What the worker did, recorded to files for the budget part (the fleet at its request
budget) and the engine part (Redis round trips per job, by step); `read_records` reads them.

`bench.instrumented_app` (and `bench.noop_app`) call `install_from_env()`: with
BENCH_TRACE_DIR set, every process of the worker then appends lines to files of its own in
that directory (files, not Redis, so that Redis holds only the service's own keys and work):

    tasks-<pid>.txt  "<epoch> <task name>"     every task run, any name (task_prerun)
    calls-<pid>.txt  "<epoch> <akool id>"      every status request sent to Akool, written
                                               when its answer came (AkoolClient.status)
    polls-<pid>.txt  "<start> <end> <outcome> <reserved_at> <state> <ours> <celery>
                      <commands>"              every poll task run (task_postrun)
    redis-<pid>.txt  "<epoch> <ours> <celery>" the main process's Redis round trips so far,
                                               every REDIS_SAMPLE_SECONDS

A poll's outcome is `sent` (Akool was asked), `slot` (the budget reserved a slot for later:
SlotReserved, nothing sent), `refused` (no slot within the horizon: AkoolRateLimited, nothing
sent) or `none` (no status call: another loop owns the job, the job is final...).
`reserved_at` is the slot the task came back for (its kwargs), -1 when none; `state` is
Celery's (RETRY, SUCCESS, IGNORED...).

With BENCH_COUNT_ROUNDTRIPS=1, redis-py's requests are counted: one per
`send_packed_command` (a command, a pipeline's execute, an EVALSHA, a health-check PING:
each one request and its answer). `ours` are those on connections of the service's client
(`worker.deps.redis_client()`: job store, request budget, metrics), `celery` all others
(kombu's broker connections: publishing a retry, fetching, acknowledging). Otherwise both
are -1. `commands` names our round trips in order, comma-separated, a pipeline's commands
joined by "+" (MULTI+HSET+EXEC); "-" when none or not counted.

With BENCH_TRACE_STEPS=1 as well (engine: round trips per job, by step), every task run is
recorded, and the main process's Celery traffic by command, for a window of the bench's
choosing:

    steps-<pid>.txt   "<start> <end> <task name> <state> <ours> <celery> <our commands>
                       <celery commands>"  every task run (task_postrun), any name
    broker-<pid>.txt  "<epoch> <commands>=<n> ..."  Celery's round trips outside tasks (the
                                               main process: fetching, acknowledging) since
                                               the line before, by command, when any

and the `redis` lines come every STEP_SAMPLE_SECONDS. Commands are named as above, an
EVALSHA by its script: EVALSHA(OWN_POLL) (the service's Lua scripts, by their SHA1).
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import redis
from celery.signals import task_postrun, task_prerun, worker_ready
from redis.connection import AbstractConnection

from worker import deps
from worker.akool.budget import SlotReserved
from worker.akool.client import AkoolClient
from worker.errors import AkoolRateLimited
from worker.names import POLL_TASK

REDIS_SAMPLE_SECONDS = 5.0
# Steps mode: fine enough to cut a burst of a few seconds out of the main process's counts.
STEP_SAMPLE_SECONDS = 0.1
OURS, CELERY = "ours", "celery"


class _Trace:
    """The per-process state: open files, round-trip counters, the running poll task."""

    def __init__(self, directory: Path, count_roundtrips: bool, steps: bool = False) -> None:
        self.directory = directory
        self.count_roundtrips = count_roundtrips or steps
        self.steps = steps
        self.files: dict[tuple[int, str], IO[str]] = {}
        self.roundtrips = {OURS: 0, CELERY: 0}
        self.task_start = 0.0
        self.task_roundtrips = (0, 0)
        self.outcome = "none"
        self.commands: list[str] = []
        # Steps mode: Celery's commands in the running task, and outside tasks (by name).
        self.in_task = False
        self.celery_commands: list[str] = []
        self.celery_outside: Counter[str] = Counter()
        self.lock = threading.Lock()

    def write(self, kind: str, line: str) -> None:
        """Append a line to this process's file of `kind` (opened after the fork)."""
        key = (os.getpid(), kind)
        out = self.files.get(key)
        if out is None:
            path = self.directory / f"{kind}-{key[0]}.txt"
            out = self.files[key] = open(path, "a", buffering=1)  # noqa: SIM115
        out.write(line + "\n")

    def counts(self) -> tuple[int, int]:
        if not self.count_roundtrips:
            return (-1, -1)
        return (self.roundtrips[OURS], self.roundtrips[CELERY])

    def label(self, command: Any) -> str:
        """One request's commands, "+"-joined; EVALSHA named by its script in steps mode."""
        return "+".join(command_names(command, script_names() if self.steps else None))

    def note_celery(self, command: Any) -> None:
        """Steps mode: remember one of Celery's requests, in the task or outside tasks."""
        label = self.label(command)
        if self.in_task:
            self.celery_commands.append(label)
            return
        with self.lock:
            self.celery_outside[label] += 1

    def take_celery_outside(self) -> Counter[str]:
        """Celery's requests outside tasks since the last call, by command."""
        with self.lock:
            taken, self.celery_outside = self.celery_outside, Counter()
        return taken


_trace: _Trace | None = None


def read_records(directory: Path, kind: str) -> Iterator[list[str]]:
    """The lines of every process's file of `kind` in `directory`, split into words (blank
    lines left out)."""
    for path in sorted(directory.glob(f"{kind}-*.txt")):
        for line in path.read_text().splitlines():
            if words := line.split():
                yield words


def install(directory: Path, *, count_roundtrips: bool, steps: bool = False) -> None:
    """Record into `directory` from now on (once per process, before the worker starts);
    `steps` (which counts round trips too) records every task run and Celery's commands."""
    global _trace
    if _trace is not None:
        return
    _trace = _Trace(directory, count_roundtrips, steps)
    _wrap_status()
    if _trace.count_roundtrips:
        _count_roundtrips()
    task_prerun.connect(_on_prerun, weak=False)
    task_postrun.connect(_on_postrun, weak=False)
    worker_ready.connect(_on_ready, weak=False)


def install_from_env() -> bool:
    """`install` as BENCH_TRACE_DIR, BENCH_COUNT_ROUNDTRIPS=1 and BENCH_TRACE_STEPS=1 say;
    False (nothing installed) without BENCH_TRACE_DIR."""
    directory = os.environ.get("BENCH_TRACE_DIR")
    if not directory:
        return False
    install(
        Path(directory),
        count_roundtrips=os.environ.get("BENCH_COUNT_ROUNDTRIPS") == "1",
        steps=os.environ.get("BENCH_TRACE_STEPS") == "1",
    )
    return True


def _on_prerun(task: Any = None, **_: Any) -> None:
    if _trace is None or task is None:
        return
    now = time.time()
    _trace.write("tasks", f"{now:.3f} {task.name}")
    _trace.task_start = now
    _trace.task_roundtrips = _trace.counts()
    _trace.outcome = "none"
    _trace.commands = []
    _trace.celery_commands = []
    _trace.in_task = _trace.steps


def _on_postrun(task: Any = None, state: str | None = None, **_: Any) -> None:
    if _trace is None or task is None:
        return
    _trace.in_task = False
    ours0, celery0 = _trace.task_roundtrips
    ours, celery = _trace.counts()
    if ours >= 0:
        ours, celery = ours - ours0, celery - celery0
    if _trace.steps:
        _write_step(task.name, state, ours, celery)
    if task.name != POLL_TASK:
        return
    reserved = (task.request.kwargs or {}).get("reserved_at")
    slot = f"{float(reserved):.3f}" if reserved is not None else "-1"
    line = f"{_trace.task_start:.3f} {time.time():.3f} {_trace.outcome} {slot} {state or '-'}"
    commands = ",".join(_trace.commands) or "-"
    _trace.write("polls", f"{line} {ours} {celery} {commands}")


def _write_step(name: str, state: str | None, ours: int, celery: int) -> None:
    """Steps mode: one line for the task run that just ended (see the module's doc)."""
    assert _trace is not None
    line = f"{_trace.task_start:.3f} {time.time():.3f} {name} {state or '-'} {ours} {celery}"
    commands = ",".join(_trace.commands) or "-"
    _trace.write("steps", f"{line} {commands} {','.join(_trace.celery_commands) or '-'}")


def _wrap_status() -> None:
    """Record each status request that reached Akool, and each poll's outcome."""
    original = AkoolClient.status

    def status(self: AkoolClient, akool_id: str) -> Any:
        assert _trace is not None
        try:
            answer = original(self, akool_id)
        except AkoolRateLimited as e:  # the budget's answer: nothing was sent
            _trace.outcome = "slot" if isinstance(e, SlotReserved) else "refused"
            raise
        except Exception:
            _sent(akool_id)  # Akool answered with an error, or the request broke
            raise
        _sent(akool_id)
        return answer

    AkoolClient.status = status  # type: ignore[method-assign]


def _sent(akool_id: str) -> None:
    assert _trace is not None
    _trace.outcome = "sent"
    _trace.write("calls", f"{time.time():.3f} {akool_id}")


def _count_roundtrips() -> None:
    """Count redis-py requests, the service client's apart from the rest."""
    assert _trace is not None
    counters = _trace.roundtrips
    send = AbstractConnection.send_packed_command

    def send_packed_command(self: Any, command: Any, check_health: bool = True) -> None:
        if getattr(self, "bench_ours", False):
            counters[OURS] += 1
            _trace.commands.append(_trace.label(command))
        else:
            counters[CELERY] += 1
            if _trace.steps:
                _trace.note_celery(command)
        send(self, command, check_health)

    AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]
    original = deps.redis_client

    def redis_client() -> redis.Redis:
        client = original()
        _mark_ours(client)
        return client

    redis_client.cache_clear = original.cache_clear  # type: ignore[attr-defined]
    deps.redis_client = redis_client  # type: ignore[assignment]


def command_names(command: Any, scripts: dict[str, str] | None = None) -> list[str]:
    """The names of the commands in one packed request (RESP arrays of bulk strings); with
    `scripts` (SHA1 -> name), an EVALSHA is named with its script: EVALSHA(OWN_POLL)."""
    packed = command if isinstance(command, bytes | str) else b"".join(command)
    data = packed.encode() if isinstance(packed, str) else bytes(packed)
    names, pos = [], 0
    try:
        while data.startswith(b"*", pos):
            end = data.index(b"\r\n", pos)
            count, pos = int(data[pos + 1 : end]), end + 2
            words: list[str] = []
            for i in range(count):
                end = data.index(b"\r\n", pos)
                length, start = int(data[pos + 1 : end]), end + 2
                if i < 2:
                    words.append(data[start : start + length].decode(errors="replace"))
                pos = start + length + 2
            if words:
                names.append(_command_name(words, scripts))
    except ValueError:
        names.append("?")
    return names or ["?"]


def _command_name(words: list[str], scripts: dict[str, str] | None) -> str:
    """A command's name from its first two words; an EVALSHA's with its script's name."""
    name = words[0].upper()
    if scripts is None or name != "EVALSHA" or len(words) < 2:
        return name
    return f"EVALSHA({scripts.get(words[1].lower(), words[1][:8])})"


@functools.cache
def script_names() -> dict[str, str]:
    """SHA1 -> name of the Lua scripts the service defines: string constants of its loaded
    modules that call redis (OWN_POLL, RESERVE for _RESERVE_SCRIPT...), hashed as redis-py's
    register_script does."""
    out: dict[str, str] = {}
    for module_name, module in list(sys.modules.items()):
        if not module_name.startswith("worker.") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            if isinstance(value, str) and "redis.call" in value and attr.strip("_").isupper():
                sha = hashlib.sha1(value.encode(), usedforsecurity=False).hexdigest()
                out.setdefault(sha, attr.strip("_").removesuffix("_SCRIPT"))
    return out


def _mark_ours(client: redis.Redis) -> None:
    """Make the connections of the service's client say so (before its first connection:
    the worker's first use is its start-up check, and pool processes open new ones)."""
    pool = client.connection_pool
    cls = pool.connection_class
    if not getattr(cls, "bench_ours", False):
        pool.connection_class = type(f"Ours{cls.__name__}", (cls,), {"bench_ours": True})


def _on_ready(**_: Any) -> None:
    """In the main process: sample its round trips so far, in a thread of their own."""
    if _trace is None or not _trace.count_roundtrips:
        return
    interval = STEP_SAMPLE_SECONDS if _trace.steps else REDIS_SAMPLE_SECONDS

    def sample() -> None:
        assert _trace is not None
        while True:
            ours, celery = _trace.counts()
            now = time.time()
            _trace.write("redis", f"{now:.3f} {ours} {celery}")
            taken = _trace.take_celery_outside() if _trace.steps else None
            if taken:
                counts = " ".join(f"{name}={n}" for name, n in sorted(taken.items()))
                _trace.write("broker", f"{now:.3f} {counts}")
            time.sleep(interval)

    threading.Thread(target=sample, name="bench-redis-sampler", daemon=True).start()
