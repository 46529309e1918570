"""End to end: submit -> poll -> archive on a real worker, Redis, S3 server and simulator."""

from __future__ import annotations

import pytest

from tests.integration.conftest import AUDIO_URL, Deployment, video_url
from worker.dev.stack import BUCKET

pytestmark = pytest.mark.integration


def test_job_from_another_process_is_archived_byte_exact(deployment: Deployment) -> None:
    video = video_url(polls=3)
    job = deployment.run(video)

    assert job.status == "archived", job.error
    assert job.archive_uri == f"s3://{BUCKET}/lipsync/{job.id}.mp4"
    served = deployment.stack.simulator.job(job.akool_id or "")
    assert deployment.stored_sha256(job) == served["sha256"]
    assert deployment.submits_for(video) == 1
    assert job.expires_at is not None and job.created_at < job.expires_at


def test_archived_object_has_video_content_type_and_job_metadata(deployment: Deployment) -> None:
    job = deployment.run(video_url(polls=1))

    head = deployment.stack.s3_client().head_object(Bucket=BUCKET, Key=f"lipsync/{job.id}.mp4")
    assert head["ContentType"] == "video/mp4"
    assert head["Metadata"] == {"job-id": job.id, "akool-id": job.akool_id}


def test_status_4_fails_the_job_saying_akool_failed_it(deployment: Deployment) -> None:
    job = deployment.run(video_url(final=4))

    assert job.status == "failed"
    assert "video_status 4" in (job.error or "")


def test_permanent_code_on_submit_fails_at_once_naming_the_code(deployment: Deployment) -> None:
    video = video_url(submit_code=1204)
    job = deployment.run(video)

    assert job.status == "failed"
    assert "1204" in (job.error or "") and "60 seconds" in (job.error or "")
    assert deployment.submits_for(video) == 1


def test_rate_limited_submit_is_retried_until_accepted(deployment: Deployment) -> None:
    video = video_url(submit_code=1005, submit_code_times=2)
    job = deployment.run(video)

    assert job.status == "archived", job.error
    # The two refusals created nothing at Akool; exactly one job was created.
    assert deployment.submits_for(video) == 3


def test_submit_answered_with_502_is_not_sent_again(deployment: Deployment) -> None:
    video = video_url(submit_http=502, submit_http_after_create=1)
    job = deployment.run(video)

    assert job.status == "failed"
    assert "502" in (job.error or "") and "not sent again" in (job.error or "")
    assert deployment.submits_for(video) == 1


def test_5xx_on_poll_is_retried_and_the_job_completes(deployment: Deployment) -> None:
    job = deployment.run(video_url(poll_http=503, poll_http_times=2))

    assert job.status == "archived", job.error
    assert deployment.stack.simulator.job(job.akool_id or "")["polls"] >= 3


def test_truncated_download_is_retried_not_stored(deployment: Deployment) -> None:
    job = deployment.run(video_url(truncate_times=1))

    assert job.status == "archived", job.error
    served = deployment.stack.simulator.job(job.akool_id or "")
    assert served["downloads"] == 2
    assert deployment.stored_sha256(job) == served["sha256"]


def test_expired_file_fails_the_job_saying_the_video_is_gone(deploy) -> None:
    # 410 on every try for the grace (ARCHIVE_GONE_GRACE_SECONDS, 1 s here) is proof.
    deployment = deploy(ARCHIVE_GONE_GRACE_SECONDS="1")
    job = deployment.run(video_url(file="expired"))

    assert job.status == "failed"
    assert "the result video is gone" in (job.error or "") and "410" in (job.error or "")
    assert "ARCHIVE_GONE_GRACE_SECONDS" in (job.error or "")
    listed = deployment.stack.s3_client().list_objects_v2(Bucket=BUCKET, Prefix=f"lipsync/{job.id}")
    assert listed.get("KeyCount", 0) == 0


def test_job_that_never_finishes_fails_after_the_poll_timeout(deploy) -> None:
    deployment = deploy(POLL_TIMEOUT_SECONDS="3")
    job = deployment.run(video_url(seconds=600))

    assert job.status == "failed"
    assert "POLL_TIMEOUT_SECONDS" in (job.error or "")


def test_wrong_api_key_fails_the_job_naming_code_1101(deploy) -> None:
    deployment = deploy(AKOOL_API_KEY="not-the-key")
    job = deployment.run(video_url())

    assert job.status == "failed"
    assert "1101" in (job.error or "")
    assert "not-the-key" not in (job.error or "")
    assert "not-the-key" not in deployment.log_text()


def test_client_credentials_auth_archives_the_job(deploy) -> None:
    deployment = deploy(
        AKOOL_API_KEY="", AKOOL_CLIENT_ID="sim-client-id", AKOOL_CLIENT_SECRET="sim-client-secret"
    )
    job = deployment.run(video_url())

    assert job.status == "archived", job.error
    assert "sim-client-secret" not in deployment.log_text()


def test_result_on_a_host_not_allowed_is_refused(deploy) -> None:
    deployment = deploy(ARCHIVE_ALLOWED_HOSTS="*.cloudfront.net")
    job = deployment.run(video_url())

    assert job.status == "failed"
    assert "ARCHIVE_ALLOWED_HOSTS" in (job.error or "")
    assert deployment.stack.simulator.job(job.akool_id or "")["downloads"] == 0


def test_bad_input_raises_value_error_and_enqueues_nothing(deployment: Deployment) -> None:
    code = (
        "from worker import submit_lipsync\n"
        "for bad in ['ftp://x/v.mp4', 'no-scheme', 'http://', '']:\n"
        "    try:\n"
        "        submit_lipsync(bad, 'https://example.com/a.wav')\n"
        "    except ValueError:\n"
        "        continue\n"
        "    raise SystemExit('accepted ' + repr(bad))\n"
    )
    queued_before = deployment.redis.zcard("lipsync:jobs")
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", code], env=deployment.env, check=True, timeout=60)
    assert deployment.redis.zcard("lipsync:jobs") == queued_before


def test_unknown_job_id_is_a_key_error(deployment: Deployment) -> None:
    with pytest.raises(KeyError):
        deployment.store.get("0" * 32)


def test_audio_url_reaches_akool_unchanged(deployment: Deployment) -> None:
    job = deployment.run(video_url())

    assert deployment.stack.simulator.job(job.akool_id or "")["audio_url"] == AUDIO_URL


def test_archive_uses_the_configured_encryption_and_storage_class(deploy) -> None:
    deployment = deploy(ARCHIVE_SSE="AES256", ARCHIVE_STORAGE_CLASS="STANDARD_IA")
    job = deployment.run(video_url())

    assert job.status == "archived", job.error
    head = deployment.stack.s3_client().head_object(Bucket=BUCKET, Key=f"lipsync/{job.id}.mp4")
    assert head["ServerSideEncryption"] == "AES256"
    assert head["StorageClass"] == "STANDARD_IA"


def test_secrets_never_reach_job_records_or_logs(deploy) -> None:
    deployment = deploy(
        AKOOL_API_KEY="", AKOOL_CLIENT_ID="sim-client-id", AKOOL_CLIENT_SECRET="sim-client-secret"
    )
    job = deployment.run(video_url(final=4))

    record = deployment.redis.hgetall(f"lipsync:job:{job.id}")
    dumped = b" ".join(k + b"=" + v for k, v in record.items())
    assert b"sim-client-secret" not in dumped
    assert "sim-client-secret" not in deployment.log_text()
    assert len(job.id) == 32 and int(job.id, 16) >= 0
