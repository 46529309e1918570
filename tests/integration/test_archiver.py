"""The archiver against real processes: moto's S3 server over HTTP and a small threaded
HTTP file server on 127.0.0.1 that serves deterministic bytes whole, short, chunked or
through a redirect. Only 127.0.0.1 is listed as an allowed host."""

from __future__ import annotations

import hashlib
import random
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from boto3.s3.transfer import TransferConfig

from worker.archive import CONTENT_TYPE, Archiver, MiB, archive_key
from worker.deps import s3_client
from worker.dev.stack import S3Server
from worker.errors import DownloadError, PermanentError, SourceRefusedError, TransientError
from worker.store.jobs import new_job_id

pytestmark = pytest.mark.integration

BUCKET = "archiver-test"
PREFIX = "videos/"
ALLOWED = ("127.0.0.1",)
# S3's smallest part is 5 MiB: parts of 5 MiB make a 12 MiB video a three-part upload.
PART = 5 * MiB
BIG = 12 * MiB + 123
WRITE_CHUNK = 256 * 1024
# Not periodic, so parts stored in the wrong order would change the sha256.
DATA = random.Random(20240601).randbytes(BIG)


class FileHandler(BaseHTTPRequestHandler):
    """Serves DATA: /full/N, /short/N (says N, sends N/2), /chunked/N, /redirect?to=URL."""

    protocol_version = "HTTP/1.1"  # chunked bodies need HTTP/1.1

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the archiver hung up on purpose (refused or broken downloads)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        mode, _, size = parts.path.strip("/").partition("/")
        if mode == "redirect":
            self._redirect(parse_qs(parts.query)["to"][0])
        elif mode in ("full", "short", "chunked"):
            getattr(self, f"_{mode}")(DATA[: int(size)])
        else:
            self.send_error(404)

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _full(self, body: bytes) -> None:
        self._headers(len(body))
        self._write(body)

    def _short(self, body: bytes) -> None:
        self._headers(len(body))
        self._write(body[: len(body) // 2])
        self.close_connection = True

    def _chunked(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for start in range(0, len(body), WRITE_CHUNK):
            chunk = body[start : start + WRITE_CHUNK]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    def _headers(self, length: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _write(self, body: bytes) -> None:
        for start in range(0, len(body), WRITE_CHUNK):
            self.wfile.write(body[start : start + WRITE_CHUNK])

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


class FileServer:
    """A FileHandler server on a free loopback port, in a thread."""

    def __init__(self) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), FileHandler)
        self.server.daemon_threads = True
        self.server.hits = []  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def hits(self) -> list[str]:
        return list(self.server.hits)  # type: ignore[attr-defined]

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    """A client of a private moto S3 server, with the test bucket created."""
    with (
        pytest.MonkeyPatch.context() as env,
        tempfile.TemporaryDirectory(prefix="archiver-s3-") as tmp,
    ):
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        server = S3Server(Path(tmp)).start()
        try:
            client = s3_client(server.url)
            client.create_bucket(Bucket=BUCKET)
            yield client
        finally:
            server.stop()


@pytest.fixture(scope="module")
def files() -> Iterator[FileServer]:
    with FileServer() as server:
        yield server


@pytest.fixture(scope="module")
def other_host() -> Iterator[FileServer]:
    """A second file server, reached as `localhost`, which is not an allowed host."""
    with FileServer() as server:
        yield server


def make_archiver(s3: Any, **options: Any) -> Archiver:
    config = TransferConfig(multipart_threshold=PART, multipart_chunksize=PART, max_concurrency=2)
    options.setdefault("allowed_hosts", ALLOWED)
    return Archiver(s3, BUCKET, prefix=PREFIX, transfer_config=config, timeout=10, **options)


def stored_sha256(s3: Any, key: str) -> str:
    """The sha256 of an object, read back as a stream."""
    digest = hashlib.sha256()
    body = s3.get_object(Bucket=BUCKET, Key=key)["Body"]
    for chunk in body.iter_chunks(MiB):
        digest.update(chunk)
    return digest.hexdigest()


def assert_nothing_stored(s3: Any, key: str) -> None:
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=key)
    assert listed.get("KeyCount", 0) == 0
    pending = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=key)
    assert pending.get("Uploads", []) == []


# --- whole copies ----------------------------------------------------------------------------


def test_a_multipart_video_is_stored_byte_exact_with_its_type_and_metadata(
    s3: Any, files: FileServer
) -> None:
    job_id = new_job_id()
    progress: list[int] = []
    result = make_archiver(s3).archive(
        job_id,
        "akool/42 x",
        files.url(f"/full/{BIG}"),
        on_progress=lambda done, _total: progress.append(done),
    )
    expected = hashlib.sha256(DATA).hexdigest()
    assert result.key == archive_key(PREFIX, job_id)
    assert result.uri == f"s3://{BUCKET}/{result.key}"
    assert (result.size, result.sha256) == (BIG, expected)
    assert stored_sha256(s3, result.key) == expected
    head = s3.head_object(Bucket=BUCKET, Key=result.key)
    assert head["ContentType"] == CONTENT_TYPE
    assert head["ContentLength"] == BIG
    assert head["Metadata"] == {"job-id": job_id, "akool-id": "akool_42_x"}
    assert head["ETag"].strip('"').endswith("-3")  # three parts: it really was multipart
    assert progress == sorted(progress) and progress[-1] == BIG


def test_a_redirect_to_an_allowed_host_is_followed(s3: Any, files: FileServer) -> None:
    target = files.url("/full/1000")
    result = make_archiver(s3).archive(new_job_id(), "a1", files.url(f"/redirect?to={target}"))
    assert result.sha256 == hashlib.sha256(DATA[:1000]).hexdigest()
    assert stored_sha256(s3, result.key) == result.sha256


# --- broken or refused copies store nothing --------------------------------------------------


def test_a_truncated_download_is_transient_and_leaves_no_object_or_pending_upload(
    s3: Any, files: FileServer
) -> None:
    job_id = new_job_id()
    with pytest.raises(DownloadError) as info:
        make_archiver(s3).archive(job_id, "a1", files.url(f"/short/{BIG}"))
    assert isinstance(info.value, TransientError)
    assert_nothing_stored(s3, archive_key(PREFIX, job_id))


def test_a_redirect_to_a_host_not_allowed_is_refused_before_it_is_asked(
    s3: Any, files: FileServer, other_host: FileServer
) -> None:
    job_id = new_job_id()
    target = other_host.url("/full/1000", host="localhost")
    with pytest.raises(SourceRefusedError, match="ARCHIVE_ALLOWED_HOSTS"):
        make_archiver(s3).archive(job_id, "a1", files.url(f"/redirect?to={target}"))
    assert other_host.hits == []
    assert_nothing_stored(s3, archive_key(PREFIX, job_id))


def test_a_wildcard_does_not_let_a_redirect_reach_a_loopback_name(
    s3: Any, files: FileServer, other_host: FileServer
) -> None:
    job_id = new_job_id()
    target = other_host.url("/full/1000", host="localhost")
    archiver = make_archiver(s3, allowed_hosts=["127.0.0.1", "local*"])
    with pytest.raises(SourceRefusedError, match="private or internal address"):
        archiver.archive(job_id, "a1", files.url(f"/redirect?to={target}"))
    assert other_host.hits == []


def test_a_chunked_body_over_the_limit_is_refused_while_streaming_and_not_stored(
    s3: Any, files: FileServer
) -> None:
    job_id = new_job_id()
    archiver = make_archiver(s3, max_bytes=PART + MiB)
    with pytest.raises(SourceRefusedError, match="ARCHIVE_MAX_BYTES") as info:
        archiver.archive(job_id, "a1", files.url(f"/chunked/{BIG}"))
    assert isinstance(info.value, PermanentError)
    assert_nothing_stored(s3, archive_key(PREFIX, job_id))


def test_a_chunked_body_within_the_limit_is_stored(s3: Any, files: FileServer) -> None:
    result = make_archiver(s3).archive(new_job_id(), "a1", files.url(f"/chunked/{BIG}"))
    assert stored_sha256(s3, result.key) == hashlib.sha256(DATA).hexdigest()


# --- encryption and storage class ------------------------------------------------------------


@pytest.mark.parametrize("size", [1000, BIG], ids=["single-part", "multipart"])
def test_encryption_and_storage_class_are_set_on_the_object(
    s3: Any, files: FileServer, size: int
) -> None:
    archiver = make_archiver(s3, sse="AES256", storage_class="STANDARD_IA")
    result = archiver.archive(new_job_id(), "a1", files.url(f"/full/{size}"))
    head = s3.head_object(Bucket=BUCKET, Key=result.key)
    assert head["ServerSideEncryption"] == "AES256"
    assert head["StorageClass"] == "STANDARD_IA"


def test_a_kms_key_without_kms_encryption_is_a_configuration_error(s3: Any) -> None:
    with pytest.raises(ValueError, match="aws:kms"):
        make_archiver(s3, sse="AES256", sse_kms_key_id="alias/videos")


# --- adopting a finished object --------------------------------------------------------------


def test_an_archived_job_is_found_again_without_downloading(s3: Any, files: FileServer) -> None:
    job_id = new_job_id()
    archiver = make_archiver(s3)
    stored = archiver.archive(job_id, "a1", files.url("/full/4096"))
    hits = len(files.hits)
    found = archiver.existing(job_id)
    assert found is not None
    assert (found.uri, found.bucket, found.key, found.size) == (
        stored.uri,
        stored.bucket,
        stored.key,
        4096,
    )
    assert found.sha256 == ""
    assert len(files.hits) == hits


def test_a_job_with_no_object_has_nothing_to_adopt(s3: Any) -> None:
    assert make_archiver(s3).existing(new_job_id()) is None


def test_an_object_stored_for_another_job_is_not_adopted(s3: Any) -> None:
    job_id = new_job_id()
    key = archive_key(PREFIX, job_id)
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"x", Metadata={"job-id": new_job_id()})
    assert make_archiver(s3).existing(job_id) is None
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"x")
    assert make_archiver(s3).existing(job_id) is None


def test_pending_uploads_of_the_jobs_key_are_aborted_and_others_kept(s3: Any) -> None:
    archiver = make_archiver(s3)
    job_id, other = new_job_id(), new_job_id()
    for key in (archive_key(archiver.prefix, job_id), archive_key(archiver.prefix, other)):
        s3.create_multipart_upload(Bucket=BUCKET, Key=key)

    assert archiver.abort_pending_uploads(job_id) == 1

    pending = s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert archive_key(archiver.prefix, job_id) not in [u["Key"] for u in pending]
    assert archive_key(archiver.prefix, other) in [u["Key"] for u in pending]
    assert archiver.abort_pending_uploads(job_id) == 0
