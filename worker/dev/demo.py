"""`lipsync demo`: one job through a private stack of real processes, checked byte for byte.

Starts redis-server, moto's S3 server and the Akool simulator on free loopback ports, runs
the Procfile's workers (`worker` for Akool's calls, `archive` for the copies), submits one
job with `submit_lipsync`, follows it until it is archived, then compares the sha256 of the
stored object with what the simulator served.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from worker.api import submit_lipsync
from worker.celery_app import reload_settings
from worker.cli import wait_for
from worker.dev.stack import BUCKET, Stack, local_stack, start_workers
from worker.status import JobStatus

DEMO_TIMEOUT_SECONDS = 120.0
PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"
# The demo's S3 server is moto's server mode (`python -m moto.server`): moto and the web
# framework of its server extra. None is a dependency of the runtime; the `demo` extra has them.
DEMO_MODULES = ("moto", "flask", "flask_cors")
DEMO_INSTALL = "pip install 'lipsync-worker[demo]'"
# The Procfile's lines that run Celery workers: Akool's calls, and the archive on its own pool.
WORKER_LINES = ("worker", "archive")


def procfile_argv(name: str, procfile: Path = PROCFILE) -> list[str] | None:
    """The command of one Procfile process, split like a shell would; None if absent."""
    if not procfile.exists():
        return None
    for line in procfile.read_text().splitlines():
        key, _, command = line.partition(":")
        if key.strip() == name and command.strip():
            return shlex.split(command)
    return None


def stored_sha256(s3: Any, bucket: str, key: str) -> str:
    """The sha256 of an S3 object, read as a stream."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    digest = hashlib.sha256()
    for chunk in body.iter_chunks(1024 * 1024):
        digest.update(chunk)
    return digest.hexdigest()


def run_demo(*, size: int | None = None) -> bool:
    """Run the demo; True when the archived bytes match what the simulator served."""
    missing = [name for name in DEMO_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"lipsync demo needs moto's S3 server ({', '.join(missing)} not installed): "
            f"{DEMO_INSTALL}",
            file=sys.stderr,
            flush=True,
        )
        return False
    print("Starting redis-server, the S3 server and the Akool simulator...", flush=True)
    with local_stack(size=size) as stack:
        commands = {line: procfile_argv(line) for line in WORKER_LINES}
        workers = start_workers(
            stack.directory,
            _worker_env(stack),
            {line: argv for line, argv in commands.items() if argv is not None},
        )
        try:
            return _push_one_job(stack)
        finally:
            for worker in workers:
                worker.stop()


def _worker_env(stack: Stack) -> dict[str, str]:
    env = dict(stack.env)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env


def _push_one_job(stack: Stack) -> bool:
    os.environ.update(stack.env)
    reload_settings()
    video = "https://example.com/input/talking-head.mp4?sim_polls=3"
    job_id = submit_lipsync(video, "https://example.com/input/voice.wav")
    print(f"Submitted job {job_id}", flush=True)
    job = wait_for(job_id, timeout=DEMO_TIMEOUT_SECONDS, live=False)
    if job.status != JobStatus.ARCHIVED or not job.archive_uri:
        print(f"Demo failed: job ended as {job.status}: {job.error}", flush=True)
        return False
    served = stack.simulator.job(job.akool_id or "")["sha256"]
    key = job.archive_uri.removeprefix(f"s3://{BUCKET}/")
    stored = stored_sha256(stack.s3_client(), BUCKET, key)
    print(f"Archived to {job.archive_uri}")
    print(f"sha256 served by the simulator: {served}")
    print(f"sha256 of the stored object:    {stored}")
    print("OK: the stored bytes match" if stored == served else "MISMATCH", flush=True)
    return stored == served
