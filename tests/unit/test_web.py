"""Tests of worker.web's WSGI app without a network: routes, limits and answers."""

from __future__ import annotations

import io
import json
from typing import Any
from wsgiref.util import setup_testing_defaults

from tests.unit.callback_fakes import RecordingHandler, body_of, fresh, receiver
from worker.web import CALLBACK_PATH, HEALTH_PATH, MAX_BODY_BYTES, WebhookApp


def call(
    app: WebhookApp, method: str, path: str, body: bytes = b"", length: str | None = None
) -> tuple[int, dict[str, Any]]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
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


def test_app_refuses_a_body_over_64_kib() -> None:
    handler = RecordingHandler()
    big = b"x" * (MAX_BODY_BYTES + 1)
    assert call(web_app(handler), "POST", CALLBACK_PATH, big)[0] == 413
    assert handler.callbacks == []


def test_app_wants_a_content_length() -> None:
    assert call(web_app(RecordingHandler()), "POST", CALLBACK_PATH, b"{}", length="")[0] == 411


def test_app_answers_503_when_handling_fails_so_akool_retries() -> None:
    app = web_app(RecordingHandler(RuntimeError("redis down")))
    assert call(app, "POST", CALLBACK_PATH, body_of(fresh()))[0] == 503


def test_app_routes_only_its_two_paths() -> None:
    app = web_app(RecordingHandler())
    assert call(app, "GET", CALLBACK_PATH)[0] == 405
    assert call(app, "GET", "/other")[0] == 404
    assert call(app, "GET", HEALTH_PATH) == (200, {"ok": True})


def test_health_says_503_when_redis_is_not_answering() -> None:
    assert call(web_app(RecordingHandler(), healthy=False), "GET", HEALTH_PATH)[0] == 503
