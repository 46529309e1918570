"""Real processes for the integration tier: redis-server, moto's S3 server, the Akool
simulator and Celery workers started from the Procfile's command. No eager mode."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import redis

from worker.dev.demo import WORKER_LINES, procfile_argv, stored_sha256
from worker.dev.processes import stop_all
from worker.dev.stack import (
    BUCKET,
    Process,
    RedisServer,
    Stack,
    local_stack,
    start_worker,
    start_workers,
    wait_until,
)
from worker.store.jobs import Job, JobStore

JOB_TIMEOUT_SECONDS = 60.0
pytestmark = pytest.mark.integration


def video_url(**sim: Any) -> str:
    """A video URL scripting the simulator; a nonce keeps per-URL submit counts apart."""
    params = {f"sim_{k}": v for k, v in sim.items()}
    params["nonce"] = uuid.uuid4().hex
    return "https://videos.example.com/in.mp4?" + urlencode(params)


AUDIO_URL = "https://videos.example.com/voice.wav"
IMAGE_URL = "https://images.example.com/face.png"

# Each kind's public submit call, with the URL that scripts the simulator (the kind's primary
# URL: a video_url(...)) as {script}.
KIND_CALLS = {
    "lipsync": "submit_lipsync({script!r}, {audio!r})",
    "talking_photo": "submit_talking_photo({script!r}, {audio!r}, resolution='720')",
    "video_translation": "submit_video_translation({script!r}, 'fr', lipsync=True)",
    "talking_avatar": (
        "submit_talking_avatar([{{'type': 'image', 'url': {script!r}}}, "
        "{{'type': 'audio', 'url': {audio!r}}}], avatar_from=3, width=720, height=1280)"
    ),
    "character_swap": "submit_character_swap({image!r}, {script!r}, duration=10)",
}


def procfile_worker_env(env: dict[str, str]) -> dict[str, str]:
    """The environment for the Procfile's `celery` command from this virtualenv."""
    out = dict(env)
    out["PATH"] = str(Path(sys.executable).parent) + os.pathsep + out.get("PATH", "")
    return out


class Deployment:
    """One worker deployment: a Redis database of its own, the Procfile's workers (one per
    worker line: `worker`, and `archive` where the Procfile has it), and ways to use them."""

    def __init__(
        self,
        stack: Stack,
        env: dict[str, str],
        name: str,
        beat: bool = False,
        workers: bool = True,
    ) -> None:
        self.stack = stack
        self.env = env
        self.name = name
        self.workers = start_procfile_workers(stack, env, name) if workers else []
        self.beat = start_procfile_beat(stack, env, name) if beat else None
        self.redis = redis.Redis.from_url(env["REDIS_URL"])
        self.store = JobStore(self.redis, retention_seconds=3600)

    @property
    def worker(self) -> Process:
        """The Procfile's `worker` process (submits and polls); started if need be."""
        if not self.workers:
            self.start_workers()
        return self.workers[0]

    @worker.setter
    def worker(self, process: Process) -> None:
        self.workers[0] = process

    @property
    def archiver(self) -> Process:
        """The process that runs archives: the Procfile's `archive`, else its `worker`."""
        return self.workers[-1]

    def log_text(self) -> str:
        """What every worker process of the deployment logged."""
        return "\n".join(process.log_text() for process in self.workers)

    def kill_worker(self) -> None:
        """SIGKILL every worker and all its pool processes, as a crash would."""
        stop_all(self.workers, signal.SIGKILL)

    def stop_workers(self) -> None:
        stop_all(self.workers)

    def start_workers(self) -> None:
        self.workers = start_procfile_workers(self.stack, self.env, self.name)

    def restart_worker(self) -> None:
        self.stop_workers()
        self.start_workers()

    def stop(self) -> None:
        """End the deployment at once (SIGKILL): a test's processes have nothing left to
        finish, and a graceful stop would wait out their running copies."""
        stop_all([*self.workers, self.beat], signal.SIGKILL)

    def submit(self, video: str, audio: str = AUDIO_URL) -> str:
        """submit_lipsync from another Python process, as application code would."""
        code = (
            "import sys; from worker import submit_lipsync; "
            "print(submit_lipsync(sys.argv[1], sys.argv[2]))"
        )
        return self.python(code, video, audio).strip().splitlines()[-1]

    def submit_kind(self, kind: str, script: str) -> str:
        """The kind's public submit call (KIND_CALLS) from another Python process, as
        application code would; `script` is the URL that scripts the simulator."""
        call = KIND_CALLS[kind].format(script=script, audio=AUDIO_URL, image=IMAGE_URL)
        return self.python(f"import worker; print(worker.{call})").strip().splitlines()[-1]

    def python(self, code: str, *args: str) -> str:
        """Run `code` in another Python process with the deployment's environment; its
        output."""
        done = subprocess.run(
            [sys.executable, "-c", code, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    def wait(self, job_id: str, timeout: float = JOB_TIMEOUT_SECONDS) -> Job:
        """The job once it is archived or failed (bounded wait)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.store.get(job_id)
            if job.is_final:
                return job
            time.sleep(0.2)
        raise AssertionError(
            f"job {job_id} not final after {timeout} s: {self.store.get(job_id)}"
            f"\n{self.log_text()[-4000:]}"
        )

    def run(self, video: str) -> Job:
        return self.wait(self.submit(video))

    def stored_sha256(self, job: Job) -> str:
        assert job.archive_uri is not None
        key = job.archive_uri.removeprefix(f"s3://{BUCKET}/")
        return stored_sha256(self.stack.s3_client(), BUCKET, key)

    def submits_for(self, video: str) -> int:
        """Submit requests that reached Akool for this video (refused ones included)."""
        return int(self.stack.simulator.stats()["submits_by_video_url"].get(video, 0))

    def akool_jobs_for(self, video: str) -> int:
        """Akool jobs created (paid for) for this video."""
        return int(self.stack.simulator.stats()["jobs_by_video_url"].get(video, 0))


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    # AOF on, as docker-compose.yml runs Redis: the fault tests restart it mid-flight.
    with local_stack() as running:
        os.environ.update({k: v for k, v in running.env.items() if k.startswith("AWS_")})
        yield running


def procfile_worker_argv(name: str, line: str = "worker") -> tuple[str, list[str]]:
    """One of the Procfile's worker lines with a node name of its own: (node, command)."""
    argv = procfile_argv(line)
    assert argv is not None, f"the Procfile has no {line} line"
    node = name if line == "worker" else f"{line}-{name}"
    return node, [*argv, "-n", f"{node}@%h", "--without-gossip", "--without-mingle"]


def start_procfile_worker(
    stack: Stack, env: dict[str, str], name: str, line: str = "worker"
) -> Process:
    """One of the Procfile's worker lines, with a node name of its own."""
    node, argv = procfile_worker_argv(name, line)
    return start_worker(stack.directory, procfile_worker_env(env), name=node, argv=argv)


def start_procfile_workers(stack: Stack, env: dict[str, str], name: str) -> list[Process]:
    """Every worker line of the Procfile side by side, each with a node name of its own."""
    lines = [line for line in WORKER_LINES if procfile_argv(line) is not None]
    commands = dict(procfile_worker_argv(name, line) for line in lines)
    return start_workers(stack.directory, procfile_worker_env(env), commands)


def start_procfile_beat(stack: Stack, env: dict[str, str], name: str) -> Process:
    """The Procfile's beat line, with a schedule file of its own."""
    argv = procfile_argv("beat")
    assert argv is not None, "the Procfile has no beat line"
    schedule = str(stack.directory / f"beat-{name}")
    # Whatever file the Procfile names, two beats must never share one.
    if "--schedule" in argv:
        argv[argv.index("--schedule") + 1] = schedule
    else:
        argv += ["--schedule", schedule]
    log = stack.directory / f"beat-{name}.log"
    process = Process(f"beat-{name}", argv, log, env=procfile_worker_env(env)).start()
    wait_until(lambda: "beat: Starting" in process.log_text(), 30, "celery beat")
    return process


_databases = iter(range(1, 64))


def _deploy(stack: Stack, beat: bool = False, workers: bool = True, **overrides: str) -> Deployment:
    db = next(_databases)
    redis.Redis(port=stack.redis.port, db=db).flushdb()
    env = dict(stack.env, REDIS_URL=f"redis://127.0.0.1:{stack.redis.port}/{db}", **overrides)
    return Deployment(stack, env, f"w{db}", beat=beat, workers=workers)


@pytest.fixture(scope="session")
def deployment(stack: Stack) -> Iterator[Deployment]:
    """The default deployment: API-key auth, every queue, the Procfile's worker command."""
    deployed = _deploy(stack)
    yield deployed
    deployed.stop()


@pytest.fixture
def deploy(stack: Stack) -> Iterator[Any]:
    """Start a deployment with other settings, on a Redis database of its own."""
    started: list[Deployment] = []

    def factory(beat: bool = False, workers: bool = True, **overrides: str) -> Deployment:
        started.append(_deploy(stack, beat=beat, workers=workers, **overrides))
        return started[-1]

    yield factory
    for deployed in started:
        deployed.stop()


# --- a private redis-server for one module ----------------------------------------------------


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a free port in a temporary directory, for one module."""
    with tempfile.TemporaryDirectory() as tmpdir:
        server = RedisServer(Path(tmpdir)).start()
        try:
            yield server
        finally:
            server.stop()
