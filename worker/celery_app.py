"""The Celery application: Redis as broker and result backend, every setting on purpose.

Start a worker with the Procfile's `worker:` line:
    celery -A worker.celery_app worker -Q lipsync.akool,lipsync.archive

Importing this module reads no settings: the configuration is computed when Celery first
needs it (publishing a task, starting a worker), so an application can import the API
without a complete environment, and a bad setting is reported where it is used.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import ssl
import sys
from pathlib import Path
from typing import Any

from billiard.common import TERM_SIGNAL
from celery import Celery
from celery.signals import beat_init, task_prerun, worker_init, worker_ready

from worker import deps, download, logs, metrics
from worker.config import Settings, get_settings, preflight
from worker.errors import ConfigError
from worker.names import (
    AKOOL_QUEUE,
    EXPIRY_GUARD_TASK,
    SWEEP_TASK,
    TASK_QUEUES,
)

logger = logging.getLogger(__name__)

# Redis redelivers a message that stays unacknowledged longer than this. Countdown tasks
# wait unacknowledged in the worker (POLL_MAX_SECONDS is capped at 900 s) and acks_late
# tasks are unacknowledged while they run (archive is capped at ARCHIVE_TIME_LIMIT_SECONDS),
# so both stay far below it and nothing runs twice by accident.
VISIBILITY_TIMEOUT_SECONDS = 2 * 3600
AKOOL_TASK_TIME_LIMIT_SECONDS = 300
ARCHIVE_TIME_LIMIT_SECONDS = 3600
# Keep publishing through a Redis outage of about two minutes (the default gives up after
# about 0.4 s, which would drop the rest of a chain during self.retry).
PUBLISH_RETRY_POLICY = {
    "max_retries": 40,
    "interval_start": 0.2,
    "interval_step": 0.5,
    "interval_max": 3.0,
}
RESULT_EXPIRES_SECONDS = 24 * 3600
EXPIRY_GUARD_INTERVAL_SECONDS = 600.0
# On SIGTERM, running tasks get this long to finish before they are cancelled and handed
# back to the queue: a submit or a poll (at most AKOOL_TIMEOUT_SECONDS) normally finishes,
# an hour-long archive does not have to. Keep it well under the platform's grace period
# (docker-compose.yml: stop_grace_period 60 s; Kubernetes' default is 30 s).
SOFT_SHUTDOWN_SECONDS = 15.0


def celery_config(settings: Settings) -> dict[str, Any]:
    """Every Celery setting the project relies on, each with its reason."""
    transport: dict[str, Any] = {
        "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS,  # see above
        "socket_keepalive": True,  # notice dead connections to Redis
        "health_check_interval": 15,  # ping idle connections so a restart is seen at once
    }
    backend_url = settings.redis_url
    if settings.redis_sentinel is not None:
        # A sentinel:// REDIS_URL is the broker's and the backend's URL (kombu's and Celery's
        # sentinel transports); they ask these sentinels for the master by name. Celery's
        # backend takes the database and password from the first sentinel only, and its
        # censored configuration (`celery report`, `inspect conf`) masks only the first
        # password: the others are left out of the backend's URL.
        transport.update(deps.sentinel_transport_options(settings.redis_sentinel))
        first, *others = backend_url.split(";")
        hosts = ["sentinel://" + o.rpartition("@")[2] if "@" in o else o for o in others]
        backend_url = ";".join([first, *hosts])
    # A rediss:// URL that does not say otherwise requires a valid certificate, as redis-py
    # (the job store) does: kombu would check none, and Celery's result backend would refuse
    # the URL. The URL's own ssl_* options take precedence over this default.
    tls = None
    if settings.redis_url.lower().startswith("rediss:"):
        tls = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    return {
        "broker_url": settings.redis_url,
        "result_backend": backend_url,
        "broker_use_ssl": tls,
        "redis_backend_use_ssl": tls,
        "broker_transport_options": transport,
        "result_backend_transport_options": {**transport, "retry_policy": PUBLISH_RETRY_POLICY},
        # JSON only: no pickle from the network, and arguments stay readable.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # Acknowledge after the task ran, and put it back if the worker process dies, so a
        # crash in the middle of a step is redelivered rather than lost. Steps are idempotent.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Our tasks record failures on the job themselves; ack failed tasks (no poison loop).
        "task_acks_on_failure_or_timeout": True,
        # One message at a time per process: archives are long, and a busy worker must not
        # hoard them while another sits idle.
        "worker_prefetch_multiplier": 1,
        # worker_eta_task_limit is deliberately NOT set, although the worker holds every
        # waiting poll countdown in memory (~12 KiB each, celery#2218). Measured with
        # `python -m bench` (part `polls`, 10,000 polling jobs): with a limit that binds (2,500) the
        # worker starves (it ran 38 of the 222 polls/s needed; ~7,900 polls sat in Redis up
        # to 56 s past their ETA), because kombu 5.6.2's QoS clamps the prefetch increments
        # at the limit but still decrements once per ETA task run, so the prefetch budget
        # leaks down to 1. Bound the memory by moving poll scheduling out of Celery
        # countdowns instead (see bench/RESULTS.md).
        # Publishing (including self.retry) survives short Redis outages.
        "task_publish_retry": True,
        "task_publish_retry_policy": PUBLISH_RETRY_POLICY,
        # Reconnect forever, also at start: workers come back by themselves after an outage.
        "broker_connection_retry": True,
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        # On a lost broker connection let running tasks finish; their messages are restored
        # and the repeat finds the job advanced (idempotent steps).
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        # Graceful shutdown. With REMAP_SIGTERM=SIGQUIT in the environment (the Procfile and
        # the image set it), SIGTERM starts Celery's cold shutdown, whose first phase is soft:
        # running tasks get SOFT_SHUTDOWN_SECONDS to finish; the rest are cancelled (the pool
        # process gets SIGQUIT, which raises SystemExit in the task: s3transfer aborts its
        # multipart upload) and their unacknowledged messages go back to the queue for another
        # worker. Every step is idempotent, and a re-run archive first aborts any upload a
        # stopped one left. So a worker exits about SOFT_SHUTDOWN_SECONDS after SIGTERM.
        # Without REMAP_SIGTERM, SIGTERM is a warm shutdown that waits for every running
        # task, an archive included (up to ARCHIVE_TIME_LIMIT_SECONDS): the worker warns.
        "worker_soft_shutdown_timeout": SOFT_SHUTDOWN_SECONDS,
        # Holding only countdown polls is not "busy": shut down at once, they are restored.
        "worker_enable_soft_shutdown_on_idle": False,
        # No task stores its own result: a chain hands each return value to the next task
        # in its message, and the job's ending is stored for Celery's users by the store's
        # script that ends the job, under the job id (the id of its chain's last task), so
        # `AsyncResult(job_id).get()` works however the job ended, also before the last
        # task ran (worker/store/scripts.py, `store_result`). Measured with
        # `python -m bench` (10,000 polling jobs, bench/RESULTS.md): every poll's
        # self.retry otherwise writes a RETRY record with its traceback (~1.4 KB, kept
        # RESULT_EXPIRES_SECONDS) plus a PUBLISH: about 1.4 KB of Redis per job in flight
        # (5.1 -> 3.7 KB) and two Redis round trips per poll.
        "task_ignore_result": True,
        "result_expires": RESULT_EXPIRES_SECONDS,
        "result_extended": False,
        "task_track_started": False,
        # Akool-facing tasks and the archive scale apart on their own queues.
        "task_default_queue": AKOOL_QUEUE,
        "task_routes": {name: {"queue": queue} for name, queue in TASK_QUEUES.items()},
        "task_create_missing_queues": True,
        # Beat (the Procfile's beat: line) runs the sweeper and the expiry guard. A sweep that
        # waited past its interval is dropped: the next one does the same work.
        "beat_schedule": {
            "sweep-stalled-jobs": {
                "task": SWEEP_TASK,
                "schedule": settings.sweep_interval_seconds,
                "options": {"expires": settings.sweep_interval_seconds},
            },
            "expiry-guard": {
                "task": EXPIRY_GUARD_TASK,
                "schedule": EXPIRY_GUARD_INTERVAL_SECONDS,
                "options": {"expires": EXPIRY_GUARD_INTERVAL_SECONDS},
            },
        },
        # No event stream unless an operator turns it on (Flower: celery -A ... events).
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "enable_utc": True,
        "timezone": "UTC",
        # Keep our log format; Celery would otherwise replace the root logger's handlers.
        "worker_hijack_root_logger": True,
        "worker_redirect_stdouts": False,
    }


def create_app(settings: Settings | None = None) -> Celery:
    """A Celery app; with `settings` None, configured from the environment on first use.

    It opens no connection and reads nothing until Celery needs its configuration.
    """
    app = Celery("lipsync", include=["worker.tasks"])
    if settings is not None:
        app.conf.update(celery_config(settings))
    else:
        app.add_defaults(_config_from_environment)
    return app


def _config_from_environment() -> dict[str, Any]:
    try:
        return celery_config(get_settings())
    except ConfigError as e:
        if _is_celery_command():
            # The celery command prints a long traceback for anything the app raises; a
            # setting to fix deserves one line naming it.
            sys.exit(f"lipsync: {e}")
        raise


def _is_celery_command() -> bool:
    """True in a process started as `celery ...` (worker, beat, inspect, flower)."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return program == "celery" or sys.argv[0].endswith("celery/__main__.py")


app = create_app()


def reload_settings() -> None:
    """Read the environment again and point the app and the clients at it (for the demo
    and the tests, which change the environment after import)."""
    deps.forget()
    app.conf.update(celery_config(get_settings()))


@worker_init.connect
def _check_worker(**_: Any) -> None:
    """Exit at start, naming what to fix, when the worker lacks a setting it needs or its
    Redis may evict job records.

    Celery logs and ignores exceptions from signal handlers, so a ConfigError raised here
    would let the worker start and fail every job; SystemExit is not caught.
    """
    try:
        get_settings().validate_for_worker()
        preflight.check_redis_keeps_jobs(deps.redis_client())
    except ConfigError as e:
        sys.exit(f"lipsync worker: {e}")
    if os.environ.get("REMAP_SIGTERM") != "SIGQUIT":
        logger.warning(
            "REMAP_SIGTERM=SIGQUIT is not set: on SIGTERM this worker waits for its running "
            "tasks, an archive included (up to %d s), instead of handing them back after %g s",
            ARCHIVE_TIME_LIMIT_SECONDS,
            SOFT_SHUTDOWN_SECONDS,
        )


@beat_init.connect
def _check_beat(**_: Any) -> None:
    """Beat, too, refuses a Redis that may evict job records."""
    try:
        preflight.check_redis_keeps_jobs(deps.redis_client())
    except ConfigError as e:
        sys.exit(f"lipsync beat: {e}")


@task_prerun.connect
def _stop_copies_when_cancelled(**_: Any) -> None:
    """In a pool process, make Celery's cancel at shutdown stop a running archive at once.

    Celery cancels a task by sending its pool process TERM_SIGNAL (SIGQUIT with
    REMAP_SIGTERM=SIGQUIT), whose handler raises SystemExit in the task; s3transfer would then
    wait for its reading thread to download the rest of the video before it aborts the
    upload. Closing the download first lets the process exit within seconds. Installed
    before each task, after billiard has set its own handler, which this one then calls.
    """
    current = signal.getsignal(TERM_SIGNAL)
    if getattr(current, "stops_copies", False):
        return

    def handler(signum: int, frame: Any) -> None:
        download.stop_copies()
        if callable(current):
            current(signum, frame)

    handler.stops_copies = True  # type: ignore[attr-defined]
    with contextlib.suppress(ValueError):  # only the main thread may set handlers
        signal.signal(TERM_SIGNAL, handler)


@worker_ready.connect
def _serve_metrics(**_: Any) -> None:
    """With METRICS_PORT set, the worker's main process serves the fleet's /metrics."""
    port = get_settings().metrics_port
    if port is not None:
        metrics.serve(deps.redis_client(), port)


# Logging set-up (text or JSON, the job id on every line) hooks into Celery's signals.
logs.install()
