"""Logging: plain text by default, JSON lines with LOG_FORMAT=json.

Every line logged while a task runs carries the job id it works on (`job_id` in JSON, a
`[job <id>]` prefix in text), so one job's story can be followed across workers.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from typing import Any

from celery.signals import setup_logging, task_postrun, task_prerun

from worker.config import get_settings
from worker.net import escape_controls
from worker.store import is_job_id

current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)
TEXT_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(job_prefix)s%(message)s"


class JobIdFilter(logging.Filter):
    """Adds the running task's job id to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        job_id = current_job.get()
        record.job_id = job_id
        record.job_prefix = f"[job {job_id}] " if job_id else ""
        return True


class EscapeControls(logging.Filter):
    """Escapes control characters in a record's message, for a library's logger whose
    messages may quote a client's text (waitress logs a request's path): in text format a
    newline in it would forge a log line. The traceback, if any, is left as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: logging reports it at emit time
            return True
        record.msg, record.args = escape_controls(message), None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, job id, exception."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.processName,
        }
        job_id = getattr(record, "job_id", None)
        if job_id:
            out["job_id"] = job_id
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def configure(log_format: str, level: int = logging.INFO) -> None:
    """Send the root logger to stderr in the chosen format, with job ids."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(JobIdFilter())
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def install() -> None:
    """Hook our logging into Celery's signals: our format, and the job id of the running
    task on every line (called once by worker/celery_app.py)."""
    setup_logging.connect(_setup_logging, weak=False)
    task_prerun.connect(_enter_job, weak=False)
    task_postrun.connect(_leave_job, weak=False)


def _setup_logging(loglevel: Any = None, **_: Any) -> None:
    """Replace Celery's logging setup with ours (text or JSON, job ids on every line)."""
    level = loglevel if isinstance(loglevel, int) else logging.getLevelName(loglevel or "INFO")
    configure(get_settings().log_format, level if isinstance(level, int) else logging.INFO)


def _enter_job(args: Any = None, **_: Any) -> None:
    first = args[0] if args else None
    current_job.set(first if isinstance(first, str) and is_job_id(first) else None)


def _leave_job(**_: Any) -> None:
    current_job.set(None)
