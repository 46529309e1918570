"""The adaptive request budget against an Akool that allows fewer calls than
AKOOL_MAX_RPS (the simulator answers 1005 beyond 20 requests a second; AKOOL_MAX_RPS=100).

A fleet of jobs is driven by threads the way the submit and poll tasks drive it, without
Celery: each job submits, then polls on a short backoff forever (`sim_polls` never ends),
through AkoolClient with the shared RequestBudget in Redis. A call the budget cannot serve
now comes back at its reserved slot (SlotReserved) and goes on it; an answered poll books
its next slot at once when the queue is longer than its backoff; a 1005 backs off. The run
counts every call Akool answered, by second, so the share of 1005 answers and the calls
served per second after the budget adapted can be read off. tests/integration/
test_adaptive_budget.py runs a short one; `python -m bench --part adaptive` the long one,
`python -m bench --smoke` a tiny one.
"""

from __future__ import annotations

import heapq
import random
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import redis
import requests

from bench.common import Deadline, Section, fmt
from bench.stack import PORTS
from worker.akool import AkoolClient, RequestBudget, SlotReserved, holding_slot
from worker.config import Secret
from worker.dev.simulator import Simulator, SimulatorConfig
from worker.dev.stack import RedisServer
from worker.errors import AkoolError, AkoolRateLimited

API_KEY = "bench-key-Adaptive7distinct"
AUDIO = "https://videos.example.com/voice.wav"
# The bench's scenario and its goals.
SIM_RPS = 20
MAX_RPS = 100.0


@dataclass(frozen=True)
class Size:
    """Jobs driven, seconds they run, and the seconds after which the figures count."""

    jobs: int
    seconds: float
    settle: float


FULL = Size(jobs=500, seconds=90.0, settle=60.0)
SMOKE = Size(jobs=20, seconds=3.0, settle=1.5)
GOAL_1005_SHARE = 0.02
GOAL_SERVED_SHARE = 0.90
# Each job asks again this long after an answer (the poll backoff, short so the jobs want
# far more than Akool allows) and after a 1005.
POLL_SECONDS = 1.0
BACKOFF_1005_SECONDS = 2.0
# Threads stand in for worker processes; as in the worker, none sleeps for a slot (a later
# slot comes back through the schedule, like a Celery countdown).
THREADS = 24
BUDGET_WAIT_SECONDS = 0.0
TIMEOUT = 10.0


@dataclass
class FleetRun:
    """Every answered call of a run: (seconds since the start, outcome)."""

    seconds: float
    calls: list[tuple[float, str]] = field(default_factory=list)

    def after(self, start: float) -> list[str]:
        """Outcomes of the calls answered `start` seconds or more into the run."""
        return [outcome for at, outcome in self.calls if at >= start]

    def share_1005(self, start: float) -> float:
        """Share of the calls after `start` that Akool refused with 1005."""
        outcomes = self.after(start)
        return sum(o == "code_1005" for o in outcomes) / len(outcomes) if outcomes else 0.0

    def served_per_second(self, start: float) -> float:
        """Calls Akool served (not 1005) per second after `start`."""
        served = sum(o == "ok" for o in self.after(start))
        return served / max(self.seconds - start, 1e-9)


class _Schedule:
    """Jobs by when they are due, for the threads to take in order (first due first)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, float | None]] = []
        self._ready = threading.Condition()

    def put(self, due: float, job: int, reserved_at: float | None = None) -> None:
        with self._ready:
            heapq.heappush(self._heap, (due, job, reserved_at))
            self._ready.notify()

    def take(self, stop: float) -> tuple[int, float | None] | None:
        """The next due job (waiting for it), or None once `stop` (monotonic) has passed."""
        with self._ready:
            while True:
                now = time.time()
                if time.monotonic() >= stop:
                    return None
                if self._heap and self._heap[0][0] <= now:
                    _, job, reserved_at = heapq.heappop(self._heap)
                    return job, reserved_at
                wait = self._heap[0][0] - now if self._heap else 0.1
                self._ready.wait(min(wait, 0.1))


def run_fleet(
    redis_url: str,
    sim: Simulator,
    *,
    jobs: int,
    seconds: float,
    max_rps: float = MAX_RPS,
    threads: int = THREADS,
) -> FleetRun:
    """Drive `jobs` jobs for `seconds` against `sim` through one budget of ceiling `max_rps`."""
    connection = redis.Redis.from_url(redis_url, socket_timeout=5)
    key = f"bench:budget:{uuid.uuid4().hex}"
    budget = RequestBudget(connection, max_rps, key=key)
    run = FleetRun(seconds=seconds)
    started = time.monotonic()
    lock = threading.Lock()

    def observe(_endpoint: str, outcome: str) -> None:
        with lock:
            run.calls.append((time.monotonic() - started, outcome))

    akool_ids: dict[int, str] = {}
    schedule = _Schedule()
    for job in range(jobs):
        schedule.put(time.time(), job)
    stop = started + seconds

    def work() -> None:
        with requests.Session() as session:
            client = AkoolClient(
                sim.base_url,
                api_key=Secret(API_KEY),
                session=session,
                budget=budget,
                budget_wait=BUDGET_WAIT_SECONDS,
                observer=observe,
                timeout=TIMEOUT,
            )
            while (taken := schedule.take(stop)) is not None:
                job, reserved_at = taken
                schedule.put(*_step(client, akool_ids, job, reserved_at))

    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(seconds + 30)
    connection.delete(key, budget.rate_key)
    connection.close()
    return run


def _step(
    client: AkoolClient, akool_ids: dict[int, str], job: int, reserved_at: float | None
) -> tuple[float, int, float | None]:
    """One submit or poll of `job`; when it is due next, and the slot reserved for it."""
    try:
        with holding_slot(reserved_at):
            if job in akool_ids:
                client.status(akool_ids[job])
            else:
                video = f"https://videos.example.com/{job}.mp4?sim_polls=1000000"
                akool_ids[job] = client.submit(video, AUDIO)
    except SlotReserved as e:
        return e.reserved_at, job, e.reserved_at
    except AkoolRateLimited as e:
        return time.time() + (e.retry_after or POLL_SECONDS), job, None
    except AkoolError:
        return time.time() + BACKOFF_1005_SECONDS * random.uniform(0.5, 1.5), job, None
    # As the poll task does: book the next poll's slot now when the queue is longer than
    # the backoff.
    wait, reserved_at = client.book_next(POLL_SECONDS * random.uniform(0.8, 1.2))
    return time.time() + wait, job, reserved_at


def start_limited_simulator(per_second: int = SIM_RPS) -> Simulator:
    """The in-process simulator, answering 1005 beyond `per_second` requests a second."""
    config = SimulatorConfig(api_key=API_KEY, default_size=1024)
    sim = Simulator(config, host="127.0.0.1", port=0).start()
    answer = requests.post(
        sim.base_url + "/_sim/rate-limit", json={"per_second": per_second}, timeout=TIMEOUT
    )
    answer.raise_for_status()
    return sim


def run(*, smoke: bool, work: Path, deadline: Deadline) -> Section:
    """FULL (SMOKE at smoke size): its jobs for its seconds, the 1005s after it settled."""
    size = SMOKE if smoke else FULL
    with tempfile.TemporaryDirectory(dir=work) as tmpdir:
        with PORTS:
            server = RedisServer(Path(tmpdir)).start()
            sim = start_limited_simulator()
        try:
            fleet = run_fleet(server.url, sim, jobs=size.jobs, seconds=size.seconds)
        finally:
            sim.stop()
            server.stop()
    share = fleet.share_1005(size.settle)
    served = fleet.served_per_second(size.settle)
    after = f"after {size.settle:g} s"
    section = Section(
        f"adaptive request budget (Akool allows {SIM_RPS}/s, AKOOL_MAX_RPS={MAX_RPS:g})",
        smoke=smoke,
        raw={"share_1005": share, "served_per_second": served},
    )
    section.table(
        ["setting or figure", "value"],
        [
            ["jobs (threads, one RequestBudget, no Celery)", str(size.jobs)],
            ["each job asks again after an answer, s", f"{POLL_SECONDS:g}"],
            ["the simulator answers 1005 beyond, requests/s", str(SIM_RPS)],
            ["run, s (measured after)", f"{size.seconds:g} ({size.settle:g})"],
            ["calls answered", str(len(fleet.calls))],
            [f"1005 share {after}", f"{share:.2%}"],
            [f"served calls per second {after}", fmt(served)],
        ],
    )
    served_goal = GOAL_SERVED_SHARE * SIM_RPS
    section.goal(
        f"1005 share < 2% {after} (Akool {SIM_RPS}/s, AKOOL_MAX_RPS={MAX_RPS:g}, {size.jobs} jobs)",
        f"{share:.2%}",
        f"{GOAL_1005_SHARE:.0%}",
        share < GOAL_1005_SHARE,
    )
    section.goal(
        f"calls served >= 90% of Akool's {SIM_RPS}/s {after}",
        f"{fmt(served)} calls/s",
        f"{fmt(served_goal)} calls/s",
        served >= served_goal,
    )
    return section
