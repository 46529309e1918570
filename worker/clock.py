"""The one clock: the wall clock, read only by the entry points.

The logic never reads the time itself. A function that decides something at a moment takes
that moment as `now` (epoch seconds); an object that lives across moments (the job store,
the request budget, the web app) takes a `clock`, a callable returning epoch seconds. The
entry points (the Celery tasks, the public API, the CLI, the web process) pass `wall_clock`
or a reading of it, and tests pass a fixed or stepping clock. Durations and timeouts are
measured on `time.monotonic`, which no one compares across processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

# () -> epoch seconds.
Clock = Callable[[], float]


def wall_clock() -> float:
    """Seconds since the epoch, now (the system's clock)."""
    return time.time()


def wall_clock_ms() -> int:
    """Milliseconds since the epoch, now (Akool stamps its webhook callbacks in ms)."""
    return int(time.time() * 1000)
