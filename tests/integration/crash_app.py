"""A worker that dies right after a job's final write, before it announces the end.

`celery -A tests.integration.crash_app worker ...` with CRASH_MARKER set to a file path: the
first pool process about to announce an ending writes the marker and kills itself with
SIGKILL, as a crash at the worst moment would; every later announcement runs as usual.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from worker import tasks
from worker.celery_app import app

__all__ = ["app"]

_announce = tasks.announce_end


def _die_once_before_announcing(job_id: str) -> None:
    marker = Path(os.environ["CRASH_MARKER"])
    if not marker.exists():
        marker.write_text(job_id)
        os.kill(os.getpid(), signal.SIGKILL)
    _announce(job_id)


tasks.announce_end = _die_once_before_announcing
