"""Where the engine part's pipeline worker spends its CPU: py-spy's folded stacks sorted into
CATEGORIES by the files on them, and each category's share scaled to a run's CPU per job."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.common import fmt

CELERY_MAIN = "Celery, main process (fetch, ack, dispatch to the pool)"
CELERY_POOL = "Celery, pool processes (task tracing, pool IPC, publishing the next task)"
LOGGING = "logging (Celery's and ours, INFO lines)"
OUR_REDIS = "the service's Redis work (redis-py)"
AKOOL = "Akool API via requests (submit, status)"
DOWNLOAD = "video download via requests (archive; address checks included)"
S3 = "S3 via botocore / s3transfer (HEAD, PUT; its upload threads)"
OUR_OTHER = "the service's own Python (records, the archive's heartbeat thread...)"
OTHER = "other (threads, interpreter; no Celery or service frame)"
CATEGORIES = (CELERY_MAIN, CELERY_POOL, LOGGING, OUR_REDIS, AKOOL, DOWNLOAD, S3, OUR_OTHER, OTHER)
_S3_FILES = ("botocore/", "boto3/", "s3transfer/")
_HTTP_FILES = ("requests/", "urllib3/", "http/client.py")
_CELERY_FILES = ("celery/", "kombu/", "billiard/", "vine/", "amqp/", "redis/")


def _file(frame: str) -> str:
    """The source file of a py-spy frame "function (path/file.py:123)"."""
    return frame.rpartition(" (")[2].rstrip(")").rpartition(":")[0]


def categorise(frames: list[str]) -> str:
    """The category of one folded stack (py-spy --subprocesses: "process ..." frames first;
    one of them means the main process)."""
    if sum(f.startswith("process ") for f in frames) == 1:
        return CELERY_MAIN
    files = [_file(f) for f in frames if not f.startswith("process ")]
    if any(f.startswith(_S3_FILES) for f in files):
        return S3
    if any(f.startswith("logging/") for f in files):
        return LOGGING
    if any(f.startswith("worker/") for f in files):
        if any(f.startswith("redis/") for f in files):
            return OUR_REDIS
        if any(f.startswith(_HTTP_FILES) or f == "worker/net/guard.py" for f in files):
            return AKOOL if "worker/akool/client.py" in files else DOWNLOAD
        return OUR_OTHER
    if "concurrent/futures/thread.py" in files:
        return S3  # s3transfer's upload threads: nothing else in the worker uses them
    if any(f.startswith(_CELERY_FILES) for f in files):
        return CELERY_POOL
    return OTHER


def cpu_shares(raw: Path) -> dict[str, float]:
    """The share of a py-spy raw file's samples in each category (empty when none)."""
    counts: Counter[str] = Counter()
    if raw.exists():
        for line in raw.read_text(errors="replace").splitlines():
            stack, _, n = line.rpartition(" ")
            if n.isdigit() and stack:
                counts[categorise(stack.split(";"))] += int(n)
    total = sum(counts.values())
    return {c: counts[c] / total for c in CATEGORIES} if total else {}


def cpu_text(shares: Mapping[str, float], run: Mapping[str, Any], profiled: int) -> str:
    """Worker CPU per job by category: the profile's shares times the timed run's CPU."""
    cpu_ms = run["cpu_ms"]
    lines = [
        f"pipeline worker CPU per job by category: {fmt(cpu_ms, 1)} ms/job in the timed run x "
        f"the share of py-spy's samples over {profiled} more jobs (that run: "
        f"{fmt(run.get('profile_cpu_ms', float('nan')), 1)} ms/job with py-spy attached)"
    ]
    lines += [
        f"  {fmt(share * cpu_ms, 2):>6} ms  {share:6.1%}  {name}" for name, share in shares.items()
    ]
    return "\n".join(lines)
