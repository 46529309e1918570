"""Akool's other video kinds with real processes: each is submitted through the public API
from an application's process, sent to its own path at the simulator, polled, and archived
byte-exact with one Akool job; a status 4 fails it, and a bad argument stores nothing."""

from __future__ import annotations

import json

import pytest

from tests.integration.conftest import AUDIO_URL, IMAGE_URL, KIND_CALLS, Deployment, video_url
from worker.dev.demo import stored_sha256
from worker.dev.stack import BUCKET
from worker.names import LIPSYNC_KIND
from worker.store import keys

pytestmark = pytest.mark.integration

IMAGE = IMAGE_URL
OTHER_KINDS = sorted(kind for kind in KIND_CALLS if kind != LIPSYNC_KIND)


@pytest.mark.parametrize("kind", OTHER_KINDS)
def test_each_kind_is_archived_byte_exact_with_one_akool_job(
    deployment: Deployment, kind: str
) -> None:
    script = video_url(polls=1)
    job = deployment.wait(deployment.submit_kind(kind, script))
    assert job.status == "archived", job.error
    assert job.kind == kind
    served = deployment.stack.simulator.job(job.akool_id or "")
    assert served["kind"] == kind
    assert deployment.stored_sha256(job) == served["sha256"]
    assert deployment.akool_jobs_for(script) == 1


@pytest.mark.parametrize("kind", OTHER_KINDS)
def test_each_kind_failed_by_akool_fails_saying_so_with_no_object(
    deployment: Deployment, kind: str
) -> None:
    script = video_url(final=4)
    job = deployment.wait(deployment.submit_kind(kind, script))
    assert job.status == "failed"
    assert "video_status 4" in (job.error or "")
    listed = deployment.stack.s3_client().list_objects_v2(Bucket=BUCKET, Prefix=f"lipsync/{job.id}")
    assert listed["KeyCount"] == 0


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


# Our suffix of each extra file, and the simulator's name for it (worker/dev/simulator/kinds.py).
EXTRA_FILES = {
    "original_srt_url": (".original.srt", "original.srt", "application/x-subrip"),
    "translated_srt_url": (".translated.srt", "translated.srt", "application/x-subrip"),
    "no_caption_video_url": (".no_caption.mp4", "no_caption.mp4", "video/mp4"),
}


def test_a_translations_three_extra_files_are_archived_beside_its_video_byte_exact(
    deployment: Deployment,
) -> None:
    script = video_url(polls=1)
    job = deployment.wait(deployment.submit_kind("video_translation", script))
    assert job.status == "archived", job.error
    served = deployment.stack.simulator.job(job.akool_id or "")
    s3 = deployment.stack.s3_client()
    assert set(job.assets or {}) == set(EXTRA_FILES)
    for field, (suffix, simulated, content_type) in EXTRA_FILES.items():
        key = f"lipsync/{job.id}{suffix}"
        assert (job.assets or {})[field] == f"s3://{BUCKET}/{key}"
        head = s3.head_object(Bucket=BUCKET, Key=key)
        assert head["ContentType"] == content_type
        assert stored_sha256(s3, BUCKET, key) == served["assets"][simulated]


def test_a_failed_translation_quotes_akools_reason_escaped_and_bounded(
    deployment: Deployment,
) -> None:
    hostile = "no speech\x1b[2J found " + "x" * 2000
    script = video_url(final=4, error_code=1203, error_reason=hostile)
    job = deployment.wait(deployment.submit_kind("video_translation", script))
    assert job.status == "failed"
    error = job.error or ""
    assert "no speech\\x1b[2J found" in error and "(error_code 1203)" in error
    assert "\x1b" not in error and len(error) < 500
