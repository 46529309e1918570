"""Tests of worker.notify without Celery or Redis: how on_complete is stored, what an ended
job calls, and how its record is posted to notify_url."""

from __future__ import annotations

import json
import threading
import tracemalloc
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pytest
from celery import signature

from tests.postsink import PostSink, post_sink
from tests.unit.job_fakes import FakeStore, job
from worker.dev.stack import free_port
from worker.notify import (
    NotifyFailed,
    NotifyRefused,
    deliver,
    deliver_end,
    encode_on_complete,
    on_complete_signature,
)
from worker.status import JobStatus
from worker.store.jobs import Job, JobStore

# --- on_complete and notify_url ------------------------------------------------------------------


def test_on_complete_is_stored_as_the_json_of_its_signature() -> None:
    sig = signature("app.done", args=("extra",), queue="app-events")
    stored = json.loads(encode_on_complete(sig))
    assert stored["task"] == "app.done"
    assert stored["args"] == ["extra"]
    assert stored["options"] == {"queue": "app-events"}


@pytest.mark.parametrize("value", [{"args": []}, {"task": ""}, "app.done"])
def test_on_complete_that_is_not_a_signature_is_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="signature"):
        encode_on_complete(value)


def test_on_complete_that_json_cannot_carry_is_refused() -> None:
    with pytest.raises(ValueError, match="JSON"):
        encode_on_complete(signature("app.done", args=(object(),)))


def test_an_ended_job_calls_its_signature_with_its_queue() -> None:
    ended = job(
        status=JobStatus.ARCHIVED,
        on_complete=encode_on_complete(signature("app.done", queue="app-events")),
    )
    sig = on_complete_signature(ended)
    assert sig is not None
    assert sig["task"] == "app.done"
    assert sig["options"] == {"queue": "app-events"}


def test_a_job_without_on_complete_calls_nothing_and_a_broken_signature_is_skipped() -> None:
    assert on_complete_signature(job(status=JobStatus.FAILED)) is None
    assert on_complete_signature(job(status=JobStatus.FAILED, on_complete="{not json")) is None


class FakeOutbox:
    """What deliver_end records on the job and when it takes the job off the outbox."""

    def __init__(self) -> None:
        self.notes: list[dict[str, Any]] = []
        self.finished: list[dict[str, Any]] = []

    def note(self, job_id: str, **values: Any) -> None:
        self.notes.append(values)

    def finish(self, job_id: str, **values: Any) -> None:
        self.finished.append(values)


LOOPBACK = ("127.0.0.1",)


def no_on_complete(sig: Mapping[str, Any], job_id: str) -> None:
    raise AssertionError(f"job {job_id} has no on_complete, yet {sig} was published")


class Published:
    """The on_complete tasks deliver_end sent, or the error it meets sending one."""

    def __init__(self, error: Exception | None = None) -> None:
        self.sent: list[tuple[dict[str, Any], str]] = []
        self.error = error

    def __call__(self, sig: Mapping[str, Any], job_id: str) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append((dict(sig), job_id))


def test_an_on_complete_is_published_once_with_the_job_id_and_recorded() -> None:
    ended = job(status=JobStatus.ARCHIVED, on_complete='{"task": "app.done"}')
    store, published = OutboxStore(ended), Published()
    deliver_end(cast(JobStore, store), ended.id, allowed_hosts=(), publish=published)
    assert published.sent == [({"task": "app.done"}, ended.id)]
    assert [set(note) for note in store.outbox.notes] == [{"on_complete_sent_ts"}]
    assert store.outbox.finished == [{"notify_error": None}]


def test_an_on_complete_that_cannot_be_published_is_tried_again_later() -> None:
    ended = job(status=JobStatus.ARCHIVED, on_complete='{"task": "app.done"}')
    store = OutboxStore(ended)
    with pytest.raises(NotifyFailed, match="app.done could not be sent"):
        deliver_end(
            cast(JobStore, store),
            ended.id,
            allowed_hosts=(),
            publish=Published(ConnectionError("broker away")),
        )
    assert store.outbox.notes == [] and store.outbox.finished == []


class OutboxStore(FakeStore):
    def __init__(self, *snapshots: Job) -> None:
        super().__init__(*snapshots)
        self.outbox = FakeOutbox()


def test_delivering_an_end_posts_once_and_takes_the_job_off_the_outbox(
    recorder: tuple[str, type[PostSink]],
) -> None:
    url, handler = recorder
    ended = job(status=JobStatus.FAILED, notify_url=url, error="it broke")
    store = OutboxStore(ended)
    deliver_end(
        cast(JobStore, store), ended.id, allowed_hosts=("127.0.0.1",), publish=no_on_complete
    )
    assert len(handler.bodies) == 1
    assert handler.bodies[0]["error"] == "it broke"
    assert store.outbox.finished and "notified_ts" in store.outbox.finished[0]
    assert store.outbox.finished[0]["notify_error"] is None


def test_a_notify_url_already_answered_is_not_posted_again(
    recorder: tuple[str, type[PostSink]],
) -> None:
    url, handler = recorder
    ended = job(status=JobStatus.ARCHIVED, notify_url=url, notified_ts=1.0)
    store = OutboxStore(ended)
    deliver_end(
        cast(JobStore, store), ended.id, allowed_hosts=("127.0.0.1",), publish=no_on_complete
    )
    assert handler.bodies == []
    assert store.outbox.finished == [{"notify_error": None}]


def test_a_failed_post_keeps_the_job_on_the_outbox() -> None:
    port = free_port()
    ended = job(status=JobStatus.ARCHIVED, notify_url=f"http://127.0.0.1:{port}/hook")
    store = OutboxStore(ended)
    with pytest.raises(NotifyFailed):
        deliver_end(
            cast(JobStore, store), ended.id, allowed_hosts=("127.0.0.1",), publish=no_on_complete
        )
    assert store.outbox.finished == []


@pytest.fixture
def recorder() -> Iterator[tuple[str, type[PostSink]]]:
    with post_sink("/hook?token=app-secret") as sink:
        yield sink


def test_notify_posts_the_job_record_as_json(recorder: tuple[str, type[PostSink]]) -> None:
    url, handler = recorder
    ended = job(status=JobStatus.ARCHIVED, notify_url=url, archive_uri="s3://b/k.mp4")
    assert deliver(cast(JobStore, FakeStore(ended)), ended.id, allowed_hosts=LOOPBACK) == 200
    assert handler.bodies[0]["id"] == ended.id
    assert handler.bodies[0]["status"] == JobStatus.ARCHIVED
    assert handler.bodies[0]["archive_uri"] == "s3://b/k.mp4"


@pytest.mark.parametrize("status", [500, 503, 429])
def test_notify_answered_busy_is_worth_trying_again(
    recorder: tuple[str, type[PostSink]], status: int
) -> None:
    url, handler = recorder
    handler.answers.append(status)
    ended = job(status=JobStatus.FAILED, notify_url=url)
    with pytest.raises(NotifyFailed, match=str(status)) as caught:
        deliver(cast(JobStore, FakeStore(ended)), ended.id, allowed_hosts=LOOPBACK)
    assert "app-secret" not in str(caught.value)


@pytest.mark.parametrize("status", [301, 404, 410])
def test_notify_refused_is_not_tried_again(
    recorder: tuple[str, type[PostSink]], status: int
) -> None:
    url, handler = recorder
    handler.answers.append(status)
    ended = job(status=JobStatus.FAILED, notify_url=url)
    with pytest.raises(NotifyRefused, match=str(status)):
        deliver(cast(JobStore, FakeStore(ended)), ended.id, allowed_hosts=LOOPBACK)


def test_notify_url_nobody_listens_on_is_worth_trying_again() -> None:
    ended = job(
        status=JobStatus.FAILED, notify_url=f"http://127.0.0.1:{free_port()}/hook?token=s3cret"
    )
    with pytest.raises(NotifyFailed, match="could not be reached") as caught:
        deliver(cast(JobStore, FakeStore(ended)), ended.id, allowed_hosts=LOOPBACK)
    assert "s3cret" not in str(caught.value)


def test_a_job_without_notify_url_posts_nothing() -> None:
    ended = job(status=JobStatus.FAILED)
    assert deliver(cast(JobStore, FakeStore(ended)), ended.id) is None


# --- where the record may go (NOTIFY_ALLOWED_HOSTS) ----------------------------------------------

# The test receivers listen on 127.0.0.1: listed exactly, that loopback host may be posted to.
LOOPBACK = ("127.0.0.1",)


def test_notify_to_a_loopback_address_under_the_default_allow_list_sends_nothing(
    recorder: tuple[str, type[PostSink]],
) -> None:
    url, handler = recorder
    ended = job(status=JobStatus.FAILED, notify_url=url)
    with pytest.raises(NotifyRefused, match="NOTIFY_ALLOWED_HOSTS") as caught:
        deliver(cast(JobStore, FakeStore(ended)), ended.id)
    assert "'127.0.0.1'" in str(caught.value)
    assert "app-secret" not in str(caught.value)  # the host is named, never the URL
    assert handler.bodies == []


def test_notify_to_a_loopback_host_listed_exactly_posts_exactly_once(
    recorder: tuple[str, type[PostSink]],
) -> None:
    url, handler = recorder
    ended = job(status=JobStatus.ARCHIVED, notify_url=url)
    assert deliver(cast(JobStore, FakeStore(ended)), ended.id, allowed_hosts=LOOPBACK) == 200
    assert len(handler.bodies) == 1


@pytest.mark.parametrize("host", ["localhost", "[::ffff:127.0.0.1]", "0.0.0.0", "[::1]"])
def test_notify_to_another_name_for_loopback_is_refused_by_default(
    recorder: tuple[str, type[PostSink]], host: str
) -> None:
    url, handler = recorder
    ended = job(status=JobStatus.FAILED, notify_url=url.replace("127.0.0.1", host))
    with pytest.raises(NotifyRefused, match="private or internal address") as caught:
        deliver(cast(JobStore, FakeStore(ended)), ended.id)
    assert "NOTIFY_ALLOWED_HOSTS" in str(caught.value)
    assert handler.bodies == []


class _Answer(BaseHTTPRequestHandler):
    """Answers each POST with the server's status and headers and a body of `body_size`
    zero bytes, noting how many of them went out before the client hung up."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        server: Any = self.server
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        server.posts += 1
        self.send_response(server.status)
        for name, value in server.extra_headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(server.body_size))
        self.end_headers()
        chunk = bytes(64 * 1024)
        try:
            while server.sent < server.body_size:
                self.wfile.write(chunk[: server.body_size - server.sent])
                server.sent += min(len(chunk), server.body_size - server.sent)
        except OSError:
            pass  # the client closed the answer unread, as it should
        finally:
            server.done.set()

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


@contextmanager
def answering(
    status: int, headers: dict[str, str] | None = None, body_size: int = 0
) -> Iterator[tuple[str, Any]]:
    """An _Answer server on 127.0.0.1; yields its URL and the server (posts, sent, done)."""
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    server.daemon_threads = True
    server.status, server.extra_headers, server.body_size = status, headers or {}, body_size
    server.posts, server.sent, server.done = 0, 0, threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook?token=app-secret", server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_answer_is_refused_and_not_followed(
    recorder: tuple[str, type[PostSink]], status: int
) -> None:
    elsewhere, handler = recorder
    with answering(status, {"Location": elsewhere}) as (url, server):
        ended = job(status=JobStatus.FAILED, notify_url=url)
        with pytest.raises(NotifyRefused, match=f"{status}.*not followed"):
            deliver(cast(JobStore, FakeStore(ended)), ended.id, allowed_hosts=LOOPBACK)
        assert server.posts == 1
    assert handler.bodies == []


def test_a_huge_answer_is_not_read() -> None:
    size = 64 * 1024 * 1024
    with answering(200, body_size=size) as (url, server):
        ended = job(status=JobStatus.ARCHIVED, notify_url=url)
        store = cast(JobStore, FakeStore(ended))
        tracemalloc.start()
        try:
            assert deliver(store, ended.id, allowed_hosts=LOOPBACK) == 200
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert server.done.wait(10)
    assert peak < 4 * 1024 * 1024  # the worker did not take the 64 MiB in
    assert server.sent < size  # and the server could not send it all: nobody read it
