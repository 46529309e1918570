"""Akool's other video kinds through the `lipsync` console script, run as a user would
against the real stack: `submit --kind K ... --wait` archives each kind, `jobs --kind`
lists only that kind, a batch of two kinds is submitted once however often it is run (and
a lip-sync file keeps its jobs when a `kind` column is added), and a bad row of a new kind
names its line with nothing submitted."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.integration.conftest import AUDIO_URL, Deployment, video_url
from worker.store import keys

pytestmark = pytest.mark.integration
LIPSYNC = str(Path(sys.executable).parent / "lipsync")
IMAGE = "https://images.example.com/face.png"
# Small videos: the session deployment archives every job of these tests.
SIZE = 4096


def lipsync(
    deployment: Deployment, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LIPSYNC, *args], env=deployment.env, capture_output=True, text=True, timeout=timeout
    )


def kind_args(kind: str, script: str, tmp_path: Path) -> list[str]:
    """`submit`'s flags for a job of `kind` whose primary URL is `script`."""
    if kind == "talking_photo":
        return ["--photo", script, "--audio", AUDIO_URL, "--resolution", "720"]
    if kind == "video_translation":
        return ["--video", script, "--language", "fr", "--lipsync"]
    if kind == "character_swap":
        return ["--image", IMAGE, "--video", script, "--duration", "10", "--mode", "replace"]
    elements = tmp_path / "elements.json"
    elements.write_text(
        json.dumps([{"type": "image", "url": script}, {"type": "audio", "url": AUDIO_URL}])
    )
    return ["--elements", str(elements), "--avatar-from", "3", "--width", "720"]


def csv_rows(done: subprocess.CompletedProcess) -> list[list[str]]:
    """The CSV lines a batch printed, after its header."""
    lines = done.stdout.splitlines()
    assert lines[0] == "line,job_id,status", done.stdout
    return [line.split(",") for line in lines[1:]]


@pytest.mark.parametrize(
    "kind", ["talking_photo", "video_translation", "talking_avatar", "character_swap"]
)
def test_each_kind_submitted_from_the_cli_with_wait_ends_archived(
    deployment: Deployment, kind: str, tmp_path: Path
) -> None:
    script = video_url(polls=1, size=SIZE)
    key = f"cli-{kind}-{uuid.uuid4().hex}"
    args = ["submit", "--kind", kind, *kind_args(kind, script, tmp_path)]

    done = lipsync(deployment, *args, "--idempotency-key", key, "--meta", "via=cli", "--wait")

    assert done.returncode == 0, done.stdout + done.stderr
    job_id = done.stdout.splitlines()[0]
    assert ": archived to s3://lipsync-archive/" in done.stdout.splitlines()[-1]
    job = deployment.store.get(job_id)
    assert job.kind == kind and job.metadata == {"via": "cli"} and job.idempotency_key == key
    assert deployment.akool_jobs_for(script) == 1
    shown = lipsync(deployment, "status", job_id).stdout
    assert f"kind: {kind}" in shown and "Akool body: {" in shown and script in shown
    again = lipsync(deployment, *args, "--idempotency-key", key, "--meta", "via=cli")
    assert again.returncode == 0 and again.stdout.strip() == job_id


def test_jobs_kind_lists_only_jobs_of_that_kind(deployment: Deployment, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex
    photo = lipsync(
        deployment,
        "submit",
        "--kind",
        "talking_photo",
        *kind_args("talking_photo", video_url(size=SIZE), tmp_path),
        "--meta",
        f"tag={tag}",
    )
    plain = lipsync(deployment, "submit", video_url(size=SIZE), AUDIO_URL, "--meta", f"tag={tag}")
    assert photo.returncode == 0 and plain.returncode == 0, photo.stderr + plain.stderr
    photo_id, plain_id = photo.stdout.strip(), plain.stdout.strip()

    alone = lipsync(deployment, "jobs", "--kind", "talking_photo")
    tagged = lipsync(deployment, "jobs", "--kind", "talking_photo", "--meta", f"tag={tag}")
    lipsyncs = lipsync(deployment, "jobs", "--kind", "lipsync", "--meta", f"tag={tag}")

    assert alone.returncode == 0, alone.stderr
    assert photo_id in alone.stdout and plain_id not in alone.stdout
    assert {line.split()[2] for line in alone.stdout.splitlines()[1:]} == {"talking_photo"}
    assert photo_id in tagged.stdout and plain_id not in tagged.stdout
    assert plain_id in lipsyncs.stdout and photo_id not in lipsyncs.stdout


def test_a_batch_of_two_kinds_is_submitted_once_however_often_it_is_run(
    deployment: Deployment, tmp_path: Path
) -> None:
    photo, swap = video_url(polls=1, size=SIZE), video_url(polls=1, size=SIZE)
    batch = tmp_path / "kinds.csv"
    batch.write_text(
        "kind,photo_url,audio_url,image_url,video_url,duration,meta.row\n"
        f"talking_photo,{photo},{AUDIO_URL},,,,1\n"
        f"character_swap,,,{IMAGE},{swap},12,2\n"
    )

    first = lipsync(deployment, "submit", "--batch", str(batch), "--wait")

    assert first.returncode == 0, first.stderr
    assert "2 new, 0 already submitted" in first.stderr
    rows = csv_rows(first)
    assert [row[2] for row in rows] == ["archived", "archived"]
    kinds = [deployment.store.get(row[1]).kind for row in rows]
    assert kinds == ["talking_photo", "character_swap"]

    again = lipsync(deployment, "submit", "--batch", str(batch))

    assert again.returncode == 0, again.stderr
    assert "0 new, 2 already submitted" in again.stderr
    assert [row[1] for row in csv_rows(again)] == [row[1] for row in rows]
    assert deployment.akool_jobs_for(photo) == 1 and deployment.akool_jobs_for(swap) == 1


def test_a_lipsync_file_given_a_kind_column_submits_nothing_new(
    deployment: Deployment, tmp_path: Path
) -> None:
    videos = [video_url(size=SIZE) for _ in range(2)]
    plain, kinded = tmp_path / "plain.csv", tmp_path / "kinded.csv"
    plain.write_text("video_url,audio_url\n" + "".join(f"{v},{AUDIO_URL}\n" for v in videos))
    kinded.write_text(
        f"audio_url,kind,video_url\n{AUDIO_URL},lipsync,{videos[0]}\n{AUDIO_URL},,{videos[1]}\n"
    )

    first = lipsync(deployment, "submit", "--batch", str(plain))
    again = lipsync(deployment, "submit", "--batch", str(kinded))

    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert "2 new, 0 already submitted" in first.stderr
    assert "0 new, 2 already submitted" in again.stderr
    assert [row[1] for row in csv_rows(again)] == [row[1] for row in csv_rows(first)]


def test_a_bad_row_of_a_new_kind_names_its_line_and_submits_nothing(
    deployment: Deployment, tmp_path: Path
) -> None:
    before = deployment.redis.zcard(keys.JOBS_INDEX)
    batch = tmp_path / "bad.csv"
    batch.write_text(
        "kind,photo_url,audio_url,image_url,video_url,duration\n"
        f"talking_photo,{video_url(size=SIZE)},{AUDIO_URL},,,\n"
        f"character_swap,,,{IMAGE},{video_url(size=SIZE)},121\n"
        f"talking_photo,{video_url(size=SIZE)},,,,\n"
    )

    done = lipsync(deployment, "submit", "--batch", str(batch))

    assert done.returncode == 2
    assert "nothing submitted" in done.stderr
    assert "line 3: duration must be 1 to 120 seconds" in done.stderr
    assert "line 4: kind talking_photo needs audio_url" in done.stderr
    assert done.stdout == ""
    assert deployment.redis.zcard(keys.JOBS_INDEX) == before


def test_a_bad_argument_of_a_new_kind_exits_2_with_nothing_stored(
    deployment: Deployment,
) -> None:
    before = deployment.redis.zcard(keys.JOBS_INDEX)
    args = ["--kind", "talking_photo", "--photo", video_url(), "--audio", AUDIO_URL]

    done = lipsync(deployment, "submit", *args, "--prompt", "x" * 501)

    assert done.returncode == 2
    assert "prompt is 501 characters long; at most 500" in done.stderr
    assert deployment.redis.zcard(keys.JOBS_INDEX) == before
