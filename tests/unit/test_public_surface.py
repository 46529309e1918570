"""The public surface, written out literally: what users' code, scripts and queued messages
depend on. A rename inside the package must not change any of it; a change here is a
change of the product's contract and is made on purpose.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import re
from pathlib import Path

import worker
from tests.unit.test_deployment_files import settings_variables
from worker.celery_app import app
from worker.cli.main import _parser as build_parser

ROOT = Path(__file__).resolve().parents[2]

# Every environment variable the previous release read.
VARIABLES = {
    "AKOOL_API_KEY",
    "AKOOL_BASE_URL",
    "AKOOL_CLIENT_ID",
    "AKOOL_CLIENT_SECRET",
    "AKOOL_MAX_RPS",
    "AKOOL_TIMEOUT_SECONDS",
    "AKOOL_WEBHOOK_URL",
    "ARCHIVE_ALLOWED_HOSTS",
    "ARCHIVE_BUCKET",
    "ARCHIVE_GONE_GRACE_SECONDS",
    "ARCHIVE_MAX_BYTES",
    "ARCHIVE_PREFIX",
    "ARCHIVE_SSE",
    "ARCHIVE_SSE_KMS_KEY_ID",
    "ARCHIVE_STORAGE_CLASS",
    "DASHBOARD_PASSWORD",
    "DASHBOARD_USER",
    "DOWNLOAD_MIN_BYTES_PER_SECOND",
    "DOWNLOAD_RATE_WINDOW_SECONDS",
    "DOWNLOAD_TIMEOUT_SECONDS",
    "JOB_RETENTION_DAYS",
    "LOG_FORMAT",
    "METRICS_PORT",
    "NOTIFY_ALLOWED_HOSTS",
    "POLL_INITIAL_SECONDS",
    "POLL_MAX_SECONDS",
    "POLL_TIMEOUT_SECONDS",
    "PORT",
    "REDIS_SENTINEL_MASTER",
    "REDIS_SENTINEL_PASSWORD",
    "REDIS_URL",
    "S3_ENDPOINT_URL",
    "STALL_SECONDS",
    "SUBMIT_UNKNOWN_WAIT_SECONDS",
    "SWEEP_INTERVAL_SECONDS",
    "WEBHOOK_MAX_AGE_SECONDS",
    "WEBHOOK_POLL_MAX_SECONDS",
}
# Task name -> queue, as messages already queued name them.
TASKS = {
    "lipsync.submit": "lipsync.akool",
    "lipsync.poll": "lipsync.akool",
    "lipsync.archive": "lipsync.archive",
    "lipsync.notify": "lipsync.akool",
    "lipsync.sweep": "lipsync.akool",
    "lipsync.expiry_guard": "lipsync.akool",
}
PROCFILE = {
    "worker": "env REMAP_SIGTERM=SIGQUIT celery -A worker.celery_app worker -Q lipsync.akool "
    "-n akool@%h --loglevel INFO",
    "archive": "env REMAP_SIGTERM=SIGQUIT celery -A worker.celery_app worker -Q lipsync.archive "
    "-n archive@%h --loglevel INFO",
    "beat": "celery -A worker.celery_app beat --loglevel INFO --schedule .celerybeat-schedule",
    "web": "python -m worker.web",
}
COMMANDS = {"submit", "status", "jobs", "url", "retry", "cancel", "adopt", "demo"}


def test_the_four_calls_are_imported_from_the_package_itself() -> None:
    from worker import Job, get_job, submit_lipsync, wait_for_job

    assert {"Job", "get_job", "submit_lipsync", "wait_for_job"} <= set(worker.__all__)
    assert callable(submit_lipsync) and callable(get_job) and callable(wait_for_job)
    assert Job.__name__ == "Job"


def test_every_environment_variable_of_the_previous_release_is_still_read() -> None:
    assert settings_variables() >= VARIABLES


def test_every_task_keeps_its_name_and_its_queue() -> None:
    import worker.tasks  # noqa: F401 - registers the tasks on the app

    ours = {name: task.queue for name, task in app.tasks.items() if name.startswith("lipsync.")}
    assert ours == TASKS


def test_the_procfile_keeps_its_process_lines() -> None:
    lines = (ROOT / "Procfile").read_text().splitlines()
    found = dict(line.split(": ", 1) for line in lines if re.match(r"^[a-z]+: ", line))
    assert found == PROCFILE


def test_the_lipsync_command_is_installed_with_its_subcommands() -> None:
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name="lipsync")
    assert callable(entry.load())
    parser = build_parser()
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(actions[0].choices) == COMMANDS
