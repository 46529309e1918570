"""The worker's Celery app, instrumented for the polls, budget and engine parts.

    celery -A bench.instrumented_app worker -Q lipsync.akool,lipsync.archive

Imports `worker.celery_app.app` (and its tasks) unchanged and adds a `task_prerun` handler:
for each `lipsync.poll` that was scheduled with a countdown, it appends one line
"<start epoch> <lag seconds>" to a file of its own process under BENCH_LAG_DIR, where lag
is the actual start minus the intended time (the message's ETA). Files, not Redis, so that
the Redis memory measured is the service's alone.

BENCH_TRACE_DIR, when set, records every task run, every Akool status call and every poll's
outcome (and, with BENCH_COUNT_ROUNDTRIPS=1, its Redis round trips) there: see bench/trace.py
(budget). BENCH_TRACE_STEPS=1 adds every task's round trips by command (engine).

BENCH_ETA_TASK_LIMIT, when set, overrides `worker_eta_task_limit` (for the with/without
comparison); BENCH_PREFETCH overrides `worker_prefetch_multiplier`; BENCH_STORE_RESULTS=1
turns `task_ignore_result` off again (results stored, as before that setting).
"""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from celery.signals import task_prerun

import worker.tasks  # noqa: F401 - registers the tasks on the app
from bench import trace
from worker.celery_app import app
from worker.names import POLL_TASK

__all__ = ["app"]

_LAG_DIR = os.environ.get("BENCH_LAG_DIR")
_out: dict[int, IO[str]] = {}

trace.install_from_env()
if os.environ.get("BENCH_ETA_TASK_LIMIT"):
    limit = os.environ["BENCH_ETA_TASK_LIMIT"]
    app.conf.worker_eta_task_limit = None if limit == "none" else int(limit)
if os.environ.get("BENCH_STORE_RESULTS") == "1":  # the setting before task_ignore_result
    app.conf.task_ignore_result = False
if os.environ.get("BENCH_PREFETCH"):
    app.conf.worker_prefetch_multiplier = int(os.environ["BENCH_PREFETCH"])


def _file() -> IO[str] | None:
    if not _LAG_DIR:
        return None
    pid = os.getpid()
    if pid not in _out:  # opened after the fork, one file per pool process
        _out[pid] = open(Path(_LAG_DIR) / f"lag-{pid}.txt", "a", buffering=1)  # noqa: SIM115
    return _out[pid]


@task_prerun.connect
def _record_lag(task: Any = None, **_: Any) -> None:
    if task is None or task.name != POLL_TASK:
        return
    eta = getattr(task.request, "eta", None)
    out = _file()
    if not eta or out is None:
        return
    now = time.time()
    intended = datetime.fromisoformat(eta).timestamp() if isinstance(eta, str) else float(eta)
    out.write(f"{now:.3f} {now - intended:.4f}\n")
