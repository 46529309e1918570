"""Which of our jobs a callback of a given Akool kind may act on.

Every kind's callback carries a `type` (worker/akool/kinds.py, `callback_types`). A callback
acts on a job only when its type is the job's kind: a job's Akool id and its routed URL say
which job, the type says what Akool thinks the job is, and the two must agree. An adopted
job (kind "unknown": other code submitted it, and Akool's lookup does not say its kind)
takes a callback of any known kind. A record of an earlier release is of kind "lipsync",
so it takes exactly the callbacks it took then.

A type no kind carries, or one that disagrees with the job's kind, leaves the job to its
polls, which are the safety net for a callback that never comes anyway.
"""

from __future__ import annotations

import logging

from worker.akool import KINDS, Kind
from worker.names import UNKNOWN_KIND
from worker.net import escape_controls
from worker.store import Job

# The receiver's one logger, so that its lines read (and are filtered) as one.
logger = logging.getLogger("worker.web.callbacks")

# How much of a callback's type a log line shows (the type came off the network).
MAX_LOGGED_TYPE_CHARS = 64


def logged_type(callback_type: str) -> str:
    """The callback's type fit for one log line: escaped, and cut to a bounded length."""
    if len(callback_type) > MAX_LOGGED_TYPE_CHARS:
        return escape_controls(callback_type[:MAX_LOGGED_TYPE_CHARS]) + "..."
    return escape_controls(callback_type)


def takes(job: Job, kind: Kind, callback_type: str) -> bool:
    """True when a callback of `kind` may act on `job`: the job is of that kind, or adopted
    (of a kind Akool's lookup does not say). Otherwise it is logged (WARNING) and False."""
    if job.kind in (kind.name, UNKNOWN_KIND):
        return True
    logger.warning(
        "Webhook: a callback of type %s for job %s, which is of kind %s; ignored, its polls go on",
        logged_type(callback_type),
        job.id,
        job.kind,
    )
    return False


def says_more(job: Job) -> bool:
    """True when the job's kind's lookup answer names more than a callback carries (extra
    result files, a failure reason): such a job is polled when its callback says it ended."""
    kind = KINDS.get(job.kind)
    return kind is not None and bool(kind.assets)
