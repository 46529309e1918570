"""Akool's other video kinds with real processes: each is submitted through the public API
from an application's process, sent to its own path at the simulator, polled, and archived
byte-exact with one Akool job; a status 4 fails it, and a bad argument stores nothing."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import AUDIO_URL, Deployment, video_url
from worker.store import keys

pytestmark = pytest.mark.integration

IMAGE = "https://images.example.com/face.png"

# Each kind's call, with the URL that scripts the simulator (its primary URL) as {script}.
CALLS = {
    "talking_photo": "submit_talking_photo({script!r}, {audio!r}, resolution='720')",
    "video_translation": "submit_video_translation({script!r}, 'fr', lipsync=True)",
    "talking_avatar": (
        "submit_talking_avatar([{{'type': 'image', 'url': {script!r}}}, "
        "{{'type': 'audio', 'url': {audio!r}}}], avatar_from=3, width=720, height=1280)"
    ),
    "character_swap": "submit_character_swap({image!r}, {script!r}, duration=10)",
}


def submit(deployment: Deployment, kind: str, script: str) -> str:
    """The kind's public submit call, from another process, as application code would."""
    call = CALLS[kind].format(script=script, audio=AUDIO_URL, image=IMAGE)
    code = f"import worker; print(worker.{call})"
    return deployment.python(code).strip().splitlines()[-1]


@pytest.mark.parametrize("kind", sorted(CALLS))
def test_each_kind_is_archived_byte_exact_with_one_akool_job(
    deployment: Deployment, kind: str
) -> None:
    script = video_url(polls=1)
    job = deployment.wait(submit(deployment, kind, script))
    assert job.status == "archived", job.error
    assert job.kind == kind
    served = deployment.stack.simulator.job(job.akool_id or "")
    assert served["kind"] == kind
    assert deployment.stored_sha256(job) == served["sha256"]
    assert deployment.akool_jobs_for(script) == 1


def test_a_kind_failed_by_akool_fails_saying_so(deployment: Deployment) -> None:
    script = video_url(final=4)
    job = deployment.wait(submit(deployment, "character_swap", script))
    assert job.status == "failed"
    assert "video_status 4" in (job.error or "")


@pytest.mark.parametrize(
    ("kind", "call", "named"),
    [
        ("talking_photo", "submit_talking_photo({v!r}, {a!r}, prompt='x' * 501)", "prompt"),
        ("character_swap", "submit_character_swap({v!r}, {v!r}, duration=121)", "duration"),
        ("video_translation", "submit_video_translation('ftp://x/y', 'fr')", "video_url"),
        ("talking_avatar", "submit_talking_avatar([], avatar_from=3)", "elements"),
    ],
)
def test_a_bad_argument_of_each_kind_is_refused_naming_it_with_nothing_stored(
    deployment: Deployment, kind: str, call: str, named: str
) -> None:
    before = deployment.redis.zcard(keys.JOBS_INDEX)
    code = (
        "import json, worker\n"
        "try:\n"
        f"    worker.{call.format(v=IMAGE, a=AUDIO_URL)}\n"
        "    print(json.dumps(None))\n"
        "except ValueError as e:\n"
        "    print(json.dumps(str(e)))\n"
    )
    refusal = json.loads(deployment.python(code).strip().splitlines()[-1])
    assert refusal is not None and named in refusal
    assert deployment.redis.zcard(keys.JOBS_INDEX) == before
