"""The caller's contract through the `lipsync` console script, run as a user would against
the real stack: batches from a CSV file, idempotency keys, metadata, archive keys, cancel
and adopt."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import AUDIO_URL, Deployment, video_url
from worker.dev.simulator.handler import SUBMIT_PATH
from worker.dev.stack import SIM_API_KEY, wait_until
from worker.store import keys

pytestmark = pytest.mark.integration
LIPSYNC = str(Path(sys.executable).parent / "lipsync")
# Small videos: the session deployment archives every job of these tests.
SIZE = 4096


def lipsync(
    deployment: Deployment, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LIPSYNC, *args], env=deployment.env, capture_output=True, text=True, timeout=timeout
    )


def records_for(deployment: Deployment, videos: set[str]) -> int:
    """Job records in the deployment's Redis asking for one of these videos."""
    ids = deployment.redis.zrange(keys.JOBS_INDEX, 0, -1)
    pipe = deployment.redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(keys.job(job_id.decode()), "video_url")
    return sum(1 for video in pipe.execute() if video is not None and video.decode() in videos)


def submits_for(deployment: Deployment, videos: set[str]) -> int:
    """Submits of these videos that reached the simulator, in one read of its counters."""
    counted = deployment.stack.simulator.stats()["submits_by_video_url"]
    return sum(int(counted.get(video, 0)) for video in videos)


def csv_rows(done: subprocess.CompletedProcess) -> list[list[str]]:
    """The CSV lines a batch printed, after its header."""
    lines = done.stdout.splitlines()
    assert lines[0] == "line,job_id,status", done.stdout
    return [line.split(",") for line in lines[1:]]


def test_a_batch_run_twice_submits_each_row_once(deploy, tmp_path: Path) -> None:
    # A deployment of its own: 200 jobs at the default AKOOL_MAX_RPS (5) would hold up every
    # later test of the session deployment for over a minute.
    deployment: Deployment = deploy(AKOOL_MAX_RPS="1000")
    videos = [video_url(polls=1, size=SIZE) for _ in range(200)]
    batch = tmp_path / "batch.csv"
    batch.write_text(
        "video_url,audio_url,meta.row\n"
        + "".join(f"{v},{AUDIO_URL},{i}\n" for i, v in enumerate(videos))
    )

    first = lipsync(deployment, "submit", "--batch", str(batch))

    assert first.returncode == 0, first.stderr
    assert "200 new, 0 already submitted" in first.stderr
    assert "\r" not in first.stderr  # no bar where stderr is not a terminal
    rows = csv_rows(first)
    assert [row[0] for row in rows] == [str(n) for n in range(2, 202)]
    assert len({row[1] for row in rows}) == 200 and {row[2] for row in rows} == {"queued"}
    wait_until(lambda: submits_for(deployment, set(videos)) == 200, 60, "200 submits")

    again = lipsync(deployment, "submit", "--batch", str(batch))

    assert again.returncode == 0, again.stderr
    assert "0 new, 200 already submitted" in again.stderr
    assert [row[1] for row in csv_rows(again)] == [row[1] for row in rows]
    assert deployment.redis.zcard(keys.JOBS_INDEX) == 200
    assert records_for(deployment, set(videos)) == 200
    assert submits_for(deployment, set(videos)) == 200


def test_a_batch_with_one_bad_row_submits_nothing_and_names_the_line(
    deployment: Deployment, tmp_path: Path
) -> None:
    good = [video_url(size=SIZE) for _ in range(3)]
    batch = tmp_path / "batch.csv"
    batch.write_text(
        "video_url,audio_url\n"
        f"{good[0]},{AUDIO_URL}\n{good[1]},{AUDIO_URL}\n"
        f"ftp://example.com/v.mp4,{AUDIO_URL}\n{good[2]},{AUDIO_URL}\n"
    )

    done = lipsync(deployment, "submit", "--batch", str(batch))

    assert done.returncode == 2
    assert "nothing submitted" in done.stderr
    assert "line 4: video_url must be an http(s) URL" in done.stderr
    assert done.stdout == ""
    assert records_for(deployment, set(good)) == 0


def test_a_batch_wait_exits_1_and_says_which_line_failed(
    deployment: Deployment, tmp_path: Path
) -> None:
    batch = tmp_path / "batch.csv"
    batch.write_text(
        "video_url,audio_url\n"
        f"{video_url(size=SIZE)},{AUDIO_URL}\n{video_url(final=4)},{AUDIO_URL}\n"
    )

    done = lipsync(deployment, "submit", "--batch", str(batch), "--wait")

    assert done.returncode == 1
    assert "2/2 ended: 1 archived, 1 failed" in done.stderr
    assert "line 3: " in done.stderr and "failed: Akool reported" in done.stderr
    assert [row[2] for row in csv_rows(done)] == ["archived", "failed"]


def test_a_batch_shows_a_progress_bar_when_stderr_is_a_terminal(
    deployment: Deployment, tmp_path: Path
) -> None:
    batch = tmp_path / "batch.csv"
    batch.write_text(
        "video_url,audio_url\n" + "".join(f"{video_url(size=SIZE)},{AUDIO_URL}\n" for _ in range(3))
    )
    terminal, stderr = pty.openpty()
    try:
        running = subprocess.Popen(
            [LIPSYNC, "submit", "--batch", str(batch), "--wait"],
            env=deployment.env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        os.close(stderr)
        shown = read_all(terminal)  # while it runs: a full terminal would hold it up
        out, _ = running.communicate(timeout=120)
    finally:
        os.close(terminal)

    assert running.returncode == 0, shown
    assert "[" + "=" * 30 + "] 100%  3/3 rows" in shown
    assert "3/3 ended: 3 archived" in shown
    assert out.startswith("line,job_id,status\n") and len(out.splitlines()) == 4
    assert "\r" not in out


def read_all(fd: int) -> str:
    """What a terminal's other end has shown, until it is closed (bounded by its size)."""
    chunks = []
    for _ in range(10_000):
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the other end is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_submit_with_a_key_metadata_and_an_archive_key_shows_them_in_status(
    deployment: Deployment,
) -> None:
    key, path = f"order-{uuid.uuid4().hex}", f"spring/{uuid.uuid4().hex}.mp4"
    args = ["submit", video_url(size=SIZE), AUDIO_URL, "--idempotency-key", key]
    args += ["--meta", "campaign=spring", "--meta", "user=42", "--key", path, "--wait"]

    done = lipsync(deployment, *args)

    assert done.returncode == 0, done.stderr
    job_id = done.stdout.splitlines()[0]
    assert done.stdout.splitlines()[-1].endswith(f"archived to s3://lipsync-archive/lipsync/{path}")
    shown = lipsync(deployment, "status", job_id, "--json")
    record = json.loads(shown.stdout)
    assert record["idempotency_key"] == key and record["archive_key"] == path
    assert record["metadata"] == {"campaign": "spring", "user": "42"}
    human = lipsync(deployment, "status", job_id).stdout
    assert f"idempotency key: {key}" in human and f"archive key: {path}" in human
    assert "meta.campaign: spring" in human and "meta.user: 42" in human
    again = lipsync(deployment, *args[:-1])  # the same request again: the same job
    assert again.returncode == 0 and again.stdout.strip() == job_id


def test_jobs_meta_lists_only_the_jobs_with_every_pair(deployment: Deployment) -> None:
    tag = uuid.uuid4().hex
    ids = {}
    for which in ("one", "two"):
        done = lipsync(
            deployment,
            "submit",
            video_url(size=SIZE),
            AUDIO_URL,
            "--meta",
            f"tag={tag}",
            "--meta",
            f"which={which}",
        )
        assert done.returncode == 0, done.stderr
        ids[which] = done.stdout.strip()

    listed = lipsync(deployment, "jobs", "--meta", f"tag={tag}", "--meta", "which=one")
    both = lipsync(deployment, "jobs", "--meta", f"tag={tag}")
    none = lipsync(deployment, "jobs", "--meta", f"tag={tag}", "--meta", "which=three")

    assert listed.returncode == 0, listed.stderr
    assert ids["one"] in listed.stdout and ids["two"] not in listed.stdout
    assert ids["one"] in both.stdout and ids["two"] in both.stdout
    assert none.stdout.strip() == "no jobs"


def test_cancel_of_a_processing_job_prints_cancelled(deployment: Deployment) -> None:
    job_id = deployment.submit(video_url(polls=100_000, webhook=0))
    wait_until(lambda: deployment.store.get(job_id).status == "processing", 30, "processing")

    done = lipsync(deployment, "cancel", job_id)

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{job_id}: cancelled")
    assert deployment.store.get(job_id).status == "cancelled"


def test_cancel_of_an_ended_job_says_so_and_changes_nothing(deployment: Deployment) -> None:
    job = deployment.run(video_url(size=SIZE))

    done = lipsync(deployment, "cancel", job.id)

    assert done.returncode == 0, done.stderr
    assert "archived to s3://" in done.stdout and "ended already" in done.stdout
    assert deployment.store.get(job.id).status == "archived"


def test_cancel_of_an_unknown_job_exits_1(deployment: Deployment) -> None:
    done = lipsync(deployment, "cancel", "f" * 32)

    assert done.returncode == 1
    assert "no job" in done.stderr


def test_adopt_archives_a_job_submitted_to_akool_by_other_code(deployment: Deployment) -> None:
    answer = requests.post(
        deployment.stack.simulator.url + SUBMIT_PATH,
        json={"video_url": video_url(polls=2, size=SIZE), "audio_url": AUDIO_URL},
        headers={"x-api-key": SIM_API_KEY},
        timeout=10,
    ).json()
    akool_id = answer["data"]["_id"]
    path = f"adopted/{uuid.uuid4().hex}.mp4"

    done = lipsync(deployment, "adopt", akool_id, "--key", path, "--meta", "from=other", "--wait")

    assert done.returncode == 0, done.stdout + done.stderr
    job_id = done.stdout.splitlines()[0]
    assert done.stdout.splitlines()[-1].endswith(f"archived to s3://lipsync-archive/lipsync/{path}")
    shown = lipsync(deployment, "status", job_id).stdout
    assert f"adopted: submitted to Akool by other code (Akool id {akool_id})" in shown
    assert "meta.from: other" in shown
