"""A bare Celery app for the engine-overhead reference: three no-op tasks in a chain.

Same `celery_config` as the worker (broker, acks_late, prefetch, routes, retry policy), so
the only difference from the pipeline is the work the tasks do. The third task goes to the
archive queue, as the pipeline's archive step does, and stores its result so the bench can
see the chain end.

    celery -A bench.noop_app worker -Q lipsync.akool,lipsync.archive

BENCH_TRACE_DIR (with BENCH_COUNT_ROUNDTRIPS=1, BENCH_TRACE_STEPS=1) counts its Redis round
trips as bench.instrumented_app does (bench/trace.py): all of them are Celery's here.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, chain

from bench import trace
from worker.celery_app import celery_config
from worker.config.settings import get_settings
from worker.names import AKOOL_QUEUE, ARCHIVE_QUEUE

app = Celery("bench-noop")
app.conf.update(celery_config(get_settings()))
app.conf.beat_schedule = {}
if os.environ.get("BENCH_STORE_RESULTS") == "1":  # the setting before task_ignore_result
    app.conf.task_ignore_result = False
trace.install_from_env()


@app.task(name="bench.noop_first", queue=AKOOL_QUEUE)
def noop_first(value: str) -> str:
    return value


@app.task(name="bench.noop_second", queue=AKOOL_QUEUE)
def noop_second(value: str) -> str:
    return value


# The one stored result per chain is how the bench sees a chain finish (the pipeline's
# equivalent is its job record turning `archived`); celery_config ignores results otherwise.
@app.task(name="bench.noop_third", queue=ARCHIVE_QUEUE, ignore_result=False)
def noop_third(value: str) -> str:
    return value


def signature(value: str) -> Any:
    """The three tasks as one chain, like `worker.tasks.pipeline_signature`."""
    return chain(noop_first.si(value), noop_second.s(), noop_third.s())
