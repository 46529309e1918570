"""Tests of worker.web.server without a network: the WSGI app's routes, limits and answers, and the
pieces of its waitress server (access log, request deadline, body limit, waitress's logs)."""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from types import SimpleNamespace
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from waitress.adjustments import Adjustments
from waitress.parser import HTTPRequestParser

from tests.unit.callback_fakes import RecordingHandler, body_of, fresh, receiver
from worker.akool.reconcile import Route
from worker.errors import WebhookRejected
from worker.web import server as web
from worker.web.app import CALLBACK_PATH, HEALTH_PATH, MAX_BODY_BYTES, WebhookApp

TOKEN = "s3cr3t-token-0123456789abcdefghij"


def call(
    app: WebhookApp,
    method: str,
    path: str,
    body: bytes = b"",
    length: str | None = None,
    query: str = "",
) -> tuple[int, dict[str, Any]]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "wsgi.input": io.BytesIO(body),
        "CONTENT_LENGTH": str(len(body)) if length is None else length,
    }
    setup_testing_defaults(environ)
    answer: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answer["status"] = int(status.split()[0])
        answer["headers"] = dict(headers)

    data = b"".join(app(environ, start_response))
    assert answer["headers"]["Content-Type"] == "application/json"
    return answer["status"], json.loads(data)


def web_app(handler: RecordingHandler, healthy: bool = True) -> WebhookApp:
    return WebhookApp(receiver(handler), health=lambda: healthy)


def test_app_answers_200_with_the_outcome_for_a_good_callback() -> None:
    assert call(web_app(RecordingHandler()), "POST", CALLBACK_PATH, body_of(fresh())) == (
        200,
        {"ok": True, "outcome": "handled"},
    )


def test_app_answers_401_for_a_bad_signature_and_hands_nothing_on() -> None:
    handler = RecordingHandler()
    status, _ = call(web_app(handler), "POST", CALLBACK_PATH, body_of({**fresh(), "nonce": "9"}))
    assert status == 401 and handler.callbacks == []


def test_app_hands_the_job_and_token_its_url_names_to_the_handler() -> None:
    handler = RecordingHandler()
    query = "job=" + "ab" * 16 + "&token=" + TOKEN
    assert call(web_app(handler), "POST", CALLBACK_PATH, body_of(fresh()), query=query)[0] == 200
    assert handler.callbacks[0].route == Route("ab" * 16, TOKEN)


def test_app_answers_400_for_a_url_naming_a_job_without_its_token() -> None:
    handler = RecordingHandler()
    status, _ = call(web_app(handler), "POST", CALLBACK_PATH, body_of(fresh()), query="job=ab")
    assert status == 400 and handler.callbacks == []


def test_app_answers_401_for_a_wrong_token_logging_it_once_without_the_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = RecordingHandler(WebhookRejected("the job token does not match", http_status=401))
    query = f"job=ab&token={TOKEN}"
    with caplog.at_level(logging.INFO, logger="worker.web.server"):
        status, _ = call(web_app(handler), "POST", CALLBACK_PATH, body_of(fresh()), query=query)
        web.log_access(answered(CALLBACK_PATH, command="POST", query=query))
    assert status == 401
    refused = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refused) == 1
    assert all(TOKEN not in r.getMessage() for r in caplog.records)
    assert "job=ab&token=*** HTTP/1.1" in caplog.records[-1].getMessage()


def test_app_refuses_a_body_over_64_kib() -> None:
    handler = RecordingHandler()
    big = b"x" * (MAX_BODY_BYTES + 1)
    assert call(web_app(handler), "POST", CALLBACK_PATH, big)[0] == 413
    assert handler.callbacks == []


def test_app_wants_a_content_length() -> None:
    assert call(web_app(RecordingHandler()), "POST", CALLBACK_PATH, b"{}", length="")[0] == 411


@pytest.mark.parametrize("length", ["\u00b2", "-1", "+2", "0x2", "2.0", "1e1", "2 2", "9" * 19])
def test_app_answers_400_without_a_traceback_for_a_content_length_that_is_no_ascii_number(
    length: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        status, _ = call(web_app(RecordingHandler()), "POST", CALLBACK_PATH, b"{}", length=length)
    assert status == 400
    assert [r for r in caplog.records if r.exc_info] == []


MALFORMED_BODIES = {
    "superscript-timestamp": body_of({**fresh(), "timestamp": "\u00b2"}),
    "array-nested-30000-deep": b"[" * 30_000,
    "object-nested-15000-deep": b'{"":' * 15_000,  # 64 KiB holds no deeper object
    "invalid-utf-8": b'{"nonce": "\xff"}',
    "top-level-array": b"[1, 2]",
    "number-of-5000-digits": b'{"timestamp": ' + b"9" * 5000 + b"}",
    "lone-surrogate-in-nonce": body_of({**fresh(), "nonce": "\ud800"}),
}


@pytest.mark.parametrize("body", MALFORMED_BODIES.values(), ids=MALFORMED_BODIES.keys())
def test_app_answers_400_with_one_log_line_and_no_traceback_for_a_malformed_body(
    body: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    handler = RecordingHandler()
    with caplog.at_level(logging.INFO):
        status, _ = call(web_app(handler), "POST", CALLBACK_PATH, body)
    assert status == 400 and handler.callbacks == []
    assert [(r.levelno, r.exc_info) for r in caplog.records] == [(logging.WARNING, None)]


def test_app_answers_503_when_handling_fails_so_akool_retries(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = web_app(RecordingHandler(RuntimeError("redis down")))
    with caplog.at_level(logging.INFO):
        assert call(app, "POST", CALLBACK_PATH, body_of(fresh()))[0] == 503
    # A failure of our own keeps its traceback.
    assert [r.exc_info is not None for r in caplog.records] == [True]


def test_app_routes_only_its_two_paths_and_not_metrics() -> None:
    app = web_app(RecordingHandler())
    assert call(app, "GET", CALLBACK_PATH)[0] == 405
    assert call(app, "GET", "/other")[0] == 404
    # /metrics is served on METRICS_PORT, a private port, never on the public $PORT.
    assert call(app, "GET", "/metrics")[0] == 404
    assert call(app, "GET", HEALTH_PATH) == (200, {"ok": True})


def test_health_says_503_when_redis_is_not_answering() -> None:
    assert call(web_app(RecordingHandler(), healthy=False), "GET", HEALTH_PATH)[0] == 503


def answered(path: str, *, command: str | None = "GET", query: str = "") -> Any:
    """A waitress task as it is once answered: its request, client, status and bytes."""
    request = SimpleNamespace(command=command, path=path, query=query, version="1.1")
    channel = SimpleNamespace(addr=("203.0.113.9", 4711))
    return SimpleNamespace(
        request=request,
        channel=channel,
        status="200 OK",
        content_bytes_written=12,
        start_time=time.time() - 0.005,
    )


def test_a_request_line_with_a_newline_or_esc_is_logged_escaped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    task = answered("/x\n[2024-03-18: INFO/MainProcess] forged\x1b[2J\r")
    with caplog.at_level(logging.INFO, logger="worker.web.server"):
        web.log_access(task)
    message = caplog.records[-1].getMessage()
    assert not any(c in message for c in "\n\r\x1b")
    assert (
        '"GET /x\\x0a[2024-03-18: INFO/MainProcess] forged\\x1b[2J\\x0d HTTP/1.1" 200 12' in message
    )
    assert message.startswith("203.0.113.9 ")


def test_a_request_too_broken_to_parse_is_logged_as_a_dash() -> None:
    client, line, status, size, _ = web.access_line(answered("", command=None))
    assert (client, line, status, size) == ("203.0.113.9", "-", "200", "12")


def test_waitress_log_lines_are_ours_with_controls_escaped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    web.route_server_logs()
    library = logging.getLogger("waitress")
    with caplog.at_level(logging.INFO):
        library.info("Client disconnected while serving %s", "/x\nforged line")
        library.debug("not worth a line")
    assert [r.getMessage() for r in caplog.records] == [
        "Client disconnected while serving /x\\x0aforged line"
    ]
    assert library.handlers == [] and library.propagate
    assert logging.getLogger("waitress.queue").level == logging.WARNING


def test_waitress_takes_a_body_of_64_kib_and_refuses_one_byte_more() -> None:
    adjustments = Adjustments(**web.WAITRESS_SETTINGS)

    def parsed(length: int) -> HTTPRequestParser:
        parser = HTTPRequestParser(adjustments)
        parser.received(b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % length)
        return parser

    assert parsed(MAX_BODY_BYTES).error is None
    assert parsed(MAX_BODY_BYTES + 1).error.code == 413


def deadline_channel() -> Any:
    """A connection without a socket: just what receiving a request needs."""
    channel = object.__new__(web._DeadlineChannel)
    tasks: list[Any] = []
    channel.adj = Adjustments(**web.WAITRESS_SETTINGS)
    channel.server = SimpleNamespace(add_task=tasks.append)
    channel.requests, channel.requests_lock = [], threading.Lock()
    channel.tasks = tasks
    return channel


def test_a_request_is_late_once_it_arrives_for_longer_than_its_deadline() -> None:
    channel = deadline_channel()
    assert not channel.late(time.monotonic())

    channel.received(b"POST /webhooks/akool HTTP/1.1\r\nContent-Length: 2\r\n\r\n{")

    now = time.monotonic()
    assert channel.in_flight()
    assert not channel.late(now)
    assert channel.late(now + web.REQUEST_DEADLINE_SECONDS + 0.1)


def test_a_request_that_arrived_whole_is_never_late() -> None:
    channel = deadline_channel()
    channel.received(b"POST /webhooks/akool HTTP/1.1\r\nContent-Length: 2\r\n\r\n{")
    channel.received(b"}")

    assert channel.request is None and len(channel.tasks) == 1
    assert not channel.late(time.monotonic() + 10 * web.REQUEST_DEADLINE_SECONDS)


def test_the_bounds_keep_slow_clients_from_threads_and_drop_a_5_s_trickle() -> None:
    # A client sending a byte every 5 s is silent longer than the idle timeout.
    assert web.IDLE_TIMEOUT_SECONDS < 5
    assert web.WAITRESS_SETTINGS["threads"] == web.SERVER_THREADS < web.MAX_THREADS
    # The 300 slow clients of the measurement fit, with room for real traffic.
    assert web.CONNECTION_LIMIT > 300
    assert web.WAITRESS_SETTINGS["ident"] == ""
