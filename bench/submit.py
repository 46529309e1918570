"""Redis round trips of one `submit_lipsync` call: without a key, with a new idempotency
key, with a key, metadata and an archive_key, and again with a used key.

The calls run in a child process of their own (`python -m bench.submit CALLS`, settings
from the environment) against a private redis-server that nothing else uses. Each call's
round trips are the requests redis-py sends (`send_packed_command`: a command, a
pipeline, an EVALSHA), counted on the job store's client (`worker.deps.redis_client()`)
apart from all others, which are Celery's (kombu publishing the chain's first task). INFO
commandstats before and after each call counts the commands Redis ran for it, those run
inside scripts included. The first call of the process (connections opened, the script
loaded) is counted apart; then the four kinds of call take turns, CALLS times each. Prints
one JSON line.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from redis.connection import AbstractConnection

from bench.common import ROOT, Deadline, Section, child_env, fmt
from bench.stack import PORTS
from bench.trace import command_names, script_names
from worker import deps, names, submit_lipsync
from worker.dev.stack import RedisServer, service_env

CALLS = 200
SMOKE_CALLS = 3
GOAL_EXTRA_ROUNDTRIPS = 1
VIDEO = "https://videos.example.com/in.mp4"
AUDIO = "https://videos.example.com/voice.wav"
# Nothing is asked of Akool or S3 by a submit; these only complete the settings.
UNUSED_URL = "http://127.0.0.1:9"
METADATA = {"customer": "c-1029", "order": "o-55812", "campaign": "spring", "take": "3"}
CHILD_TIMEOUT_SECONDS = 120
NO_KEY = "no key"
KEY = "idempotency key (new)"
FULL = "key + metadata + archive_key"
AGAIN = "used key again (same request)"
KINDS = (NO_KEY, KEY, FULL, AGAIN)
DESCRIPTIONS = {
    NO_KEY: "submit_lipsync(video, audio)",
    KEY: "idempotency_key=<new>",
    FULL: f"idempotency_key=<new>, metadata ({len(METADATA)} keys), archive_key=<new>",
    AGAIN: "the key of this round's second call, same arguments",
}


# --- the child process: the calls, counted ---------------------------------------------------


class RoundTripCounter:
    """redis-py requests of this process, by the client that sent them."""

    def __init__(self) -> None:
        self.sent: dict[str, list[str]] = {"store": [], "celery": []}

    def install(self) -> None:
        """Count every request from now on: the job store's client marked, Celery's the rest,
        the bench's own (`mark(client, "bench")`) left out."""
        send = AbstractConnection.send_packed_command
        sent = self.sent

        def send_packed_command(self: Any, command: Any, check_health: bool = True) -> None:
            whose = getattr(self, "bench_whose", "celery")
            if whose in sent:
                sent[whose].append("+".join(command_names(command, script_names())))
            send(self, command, check_health)

        AbstractConnection.send_packed_command = send_packed_command  # type: ignore[method-assign]

    def take(self) -> dict[str, list[str]]:
        """The requests since the last call, by client."""
        taken = {whose: list(sent) for whose, sent in self.sent.items()}
        for sent in self.sent.values():
            sent.clear()
        return taken


def mark(client: Any, whose: str) -> None:
    """Make the connections `client` opens from now on say whose they are."""
    pool = client.connection_pool
    base = pool.connection_class
    pool.connection_class = type(f"{whose.title()}{base.__name__}", (base,), {"bench_whose": whose})


def commands_run(client: Any) -> dict[str, int]:
    """Commands Redis ran so far (inside scripts too), by name, INFO left out."""
    stats = client.info("commandstats")
    return {
        name.removeprefix("cmdstat_").upper(): int(v["calls"])
        for name, v in stats.items()
        if name != "cmdstat_info"
    }


def ran_since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The commands run between two `commands_run`, by name, most first."""
    ran = {name: n - before.get(name, 0) for name, n in after.items()}
    return dict(sorted(((k, n) for k, n in ran.items() if n), key=lambda kn: (-kn[1], kn[0])))


def child(calls: int) -> dict[str, Any]:
    """The cold call, then `calls` rounds of the four kinds; each call's figures."""
    counter = RoundTripCounter()
    counter.install()
    mark(deps.redis_client(), "store")
    bench = redis.Redis.from_url(deps.settings().redis_url)
    mark(bench, "bench")

    def queued() -> int:
        return sum(int(bench.llen(queue)) for queue in names.QUEUES)

    def measured(call: Callable[..., str], **arguments: Any) -> dict[str, Any]:
        messages = queued()
        before = commands_run(bench)  # after the LLENs: only the call's commands count
        counter.take()
        started = time.perf_counter()
        job_id = call(VIDEO, AUDIO, **arguments)
        seconds = time.perf_counter() - started
        sent = counter.take()
        return {
            "job_id": job_id,
            "store": sent["store"],
            "celery": sent["celery"],
            "commands": ran_since(before, commands_run(bench)),
            "enqueued": queued() - messages,
            "ms": seconds * 1000,
        }

    cold = measured(submit_lipsync)
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
    for i in range(calls):
        key = f"bench-key-{i}"
        runs[NO_KEY].append(measured(submit_lipsync))
        runs[KEY].append(measured(submit_lipsync, idempotency_key=key))
        full = {"metadata": METADATA, "archive_key": f"bench/{i}/take.mp4"}
        runs[FULL].append(measured(submit_lipsync, idempotency_key=f"bench-full-{i}", **full))
        again = measured(submit_lipsync, idempotency_key=key)
        again["same_id"] = again["job_id"] == runs[KEY][-1]["job_id"]
        runs[AGAIN].append(again)
    return {"calls": calls, "cold": cold, "runs": runs}


def main(argv: list[str]) -> None:
    print(json.dumps(child(int(argv[0]))), flush=True)


# --- the part: a private Redis, the child, the section ---------------------------------------


def run(*, smoke: bool, work: Path, deadline: Deadline) -> Section:
    """CALLS (SMOKE_CALLS) calls of each kind in a child process, on a private Redis."""
    calls = SMOKE_CALLS if smoke else CALLS
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        with PORTS:
            server = RedisServer(Path(tmp)).start()
        try:
            raw = _counted_calls(
                calls, child_env(**service_env(server.url, UNUSED_URL, UNUSED_URL))
            )
        finally:
            server.stop()
    return _section(summarize(raw), smoke)


def _counted_calls(calls: int, env: dict[str, str]) -> dict[str, Any]:
    """`python -m bench.submit CALLS` in a child process; its JSON answer."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.submit", str(calls)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.submit failed:\n{done.stderr[-3000:]}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def _spread(values: list[int]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "min": min(values), "max": max(values)}


def summarize(raw: dict[str, Any]) -> dict[str, Any]:
    """Per kind of call: round trips (the store's, Celery's, both), commands, messages
    enqueued (mean, min, max), the most common sequences, median ms; and the cold call."""
    out: dict[str, Any] = {"calls": raw["calls"], "kinds": {}}
    for kind, calls in raw["runs"].items():
        sequences = statistics.multimode(_sequence(c) for c in calls)
        out["kinds"][kind] = {
            "store": _spread([len(c["store"]) for c in calls]),
            "celery": _spread([len(c["celery"]) for c in calls]),
            "total": _spread([len(c["store"]) + len(c["celery"]) for c in calls]),
            "commands": _spread([sum(c["commands"].values()) for c in calls]),
            "enqueued": _spread([c["enqueued"] for c in calls]),
            "sequence": sequences[0],
            "ran": statistics.multimode(_ran(c) for c in calls)[0],
            "ms": statistics.median(c["ms"] for c in calls),
            "same_id": sum(bool(c.get("same_id")) for c in calls),
        }
    cold = raw["cold"]
    out["cold"] = {
        "store": len(cold["store"]),
        "celery": len(cold["celery"]),
        "commands": sum(cold["commands"].values()),
        "enqueued": cold["enqueued"],
        "sequence": _sequence(cold),
        "ran": _ran(cold),
    }
    return out


def _ran(call: dict[str, Any]) -> str:
    return ", ".join(f"{name} {n}" for name, n in call["commands"].items()) or "none"


def _sequence(call: dict[str, Any]) -> str:
    store, celery = ", ".join(call["store"]) or "none", ", ".join(call["celery"]) or "none"
    return f"store: {store}; Celery: {celery}"


def _figure(spread: dict[str, float]) -> str:
    """The mean, with the range when the calls differed."""
    if spread["min"] == spread["max"]:
        return f"{spread['mean']:g}"
    return f"{fmt(spread['mean'], 2)} ({spread['min']:g}-{spread['max']:g})"


def _section(figures: dict[str, Any], smoke: bool) -> Section:
    calls, kinds = figures["calls"], figures["kinds"]
    section = Section("Redis round trips of one submit_lipsync call", smoke=smoke, raw=figures)
    section.table(
        ["setting", "value"],
        [
            ["Redis", "a private redis-server (config/redis.conf), used by nothing else"],
            ["calls of each kind (taking turns, after one cold call)", str(calls)],
            ["round trips", "redis-py requests (send_packed_command), per client"],
            ["commands", "INFO commandstats after minus before the call (scripts' included)"],
        ],
    )
    rows = []
    for kind in KINDS:
        k = kinds[kind]
        rows.append(
            [
                kind,
                DESCRIPTIONS[kind],
                _figure(k["store"]),
                _figure(k["celery"]),
                _figure(k["total"]),
                _figure(k["commands"]),
                _figure(k["enqueued"]),
                fmt(k["ms"], 2),
            ]
        )
    cold = figures["cold"]
    rows.append(
        [
            "first call of a process (cold)",
            "connections opened, CREATE_JOB loaded",
            str(cold["store"]),
            str(cold["celery"]),
            str(cold["store"] + cold["celery"]),
            str(cold["commands"]),
            str(cold["enqueued"]),
            "",
        ]
    )
    section.table(
        [
            "call",
            "arguments",
            "round trips: job store",
            "round trips: Celery's publish",
            "round trips: both",
            "commands Redis ran",
            "messages enqueued",
            "ms median",
        ],
        rows,
    )
    lines = [f"{kind}: {kinds[kind]['sequence']}" for kind in KINDS]
    lines.append(f"first call of a process: {cold['sequence']}")
    section.profiles.append(
        ("Requests of one call, in order (the most common sequence)", "\n".join(lines))
    )
    lines = [f"{kind}: {kinds[kind]['ran']}" for kind in KINDS]
    lines.append(f"first call of a process: {cold['ran']}")
    section.profiles.append(
        ("Commands Redis ran for one call, by name (the most common count)", "\n".join(lines))
    )
    _goals(section, kinds, calls)
    return section


def _goals(section: Section, kinds: dict[str, Any], calls: int) -> None:
    without = kinds[NO_KEY]["total"]
    for kind in (KEY, FULL):
        with_key = kinds[kind]["total"]
        store = kinds[kind]["store"]["max"]
        section.goal(
            f"submit_lipsync, {kind}: at most 1 more Redis round trip than without a key",
            f"{with_key['max']:g} at most (store {store:g} + Celery's "
            f"{kinds[kind]['celery']['max']:g}), over {calls} calls",
            f"{without['min'] + GOAL_EXTRA_ROUNDTRIPS:g} (without a key: {_figure(without)})",
            with_key["max"] <= without["min"] + GOAL_EXTRA_ROUNDTRIPS,
        )
    again = kinds[AGAIN]
    section.goal(
        "a used key, same request: the same job id, nothing enqueued",
        f"the same id in {again['same_id']} of {calls} calls; messages enqueued: "
        f"{_figure(again['enqueued'])}; round trips: {_figure(again['total'])}",
        "same id every time, 0 messages",
        again["same_id"] == calls and again["enqueued"]["max"] == 0,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
