"""Akool's lip-sync API: one session, a timeout on every call, every answer typed.

All `requests` errors are translated here into `worker.errors`; nothing else in the package
talks HTTP to Akool. What we rely on (the endpoints, the token, the business codes and what
each means to us) is written down in docs/akool.md.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Mapping
from typing import Any

import requests

from worker.akool.answers import (
    AkoolStatus,
    parse_status,
    require_id,
)
from worker.akool.budget import RequestBudget

# Named in the table of kinds, which describes every submit; imported here, not copied.
from worker.akool.kinds import KINDS, LIPSYNC_PATH
from worker.config import AKOOL_CONNECT_TIMEOUT_SECONDS, AKOOL_TIMEOUT_SECONDS, Secret
from worker.errors import (
    AkoolAuthError,
    AkoolBusy,
    AkoolError,
    AkoolPermanentError,
    AkoolRateLimited,
    AkoolRequestNotSent,
    AkoolTransientError,
    LipsyncError,
)

logger = logging.getLogger(__name__)

TOKEN_PATH = "/api/open/v3/getToken"  # noqa: S105 - a path, not a secret
STATUS_PATH = "/api/open/v3/content/video/infobymodelid"

CODE_OK = 1000
CODE_TOKEN_INVALID = 1101
# "The content you get does not exist": about an id Akool gave us, not proof by one answer.
CODE_NOT_FOUND = 1008
# Akool says "try again later" for these; repeating the request is safe and may succeed.
TRANSIENT_CODES = {
    1005: "Akool is rate limiting: requests are being made too frequently (code 1005)",
    1015: "Akool had a video processing error (code 1015)",
    1201: "Akool could not create the audio (code 1201)",
    1205: "Akool could not create the video (code 1205)",
}
AUTH_CODES = {
    1101: "Akool refused the credentials: invalid authorization or expired token (code 1101)",
    1102: "Akool received no credentials (code 1102)",
}
PERMANENT_CODES = {
    1003: "Akool rejected a parameter or found one empty (code 1003)",
    1004: "the Akool account needs verification (code 1004)",
    1006: "the Akool quota is used up (code 1006)",
    1008: "Akool says the content does not exist (code 1008)",
    1009: "the Akool account has no permission for this (code 1009)",
    1103: "the Akool account's payment is overdue (code 1103)",
    1104: "the Akool account has insufficient credit (code 1104)",
    1200: "the Akool account has been banned (code 1200)",
    1202: "Akool already lip-synced this video in this language (code 1202)",
    1203: "the video has no audio track (code 1203)",
    1204: "the video is longer than 60 seconds (code 1204)",
    1207: "the video is larger than 300 MB (code 1207)",
    1208: "Akool could not parse the video (code 1208)",
    1209: "the video's encoding is not supported (code 1209)",
    1210: "the video's frame rate is over the limit of 60 fps (code 1210)",
    1211: "Akool failed to create the lip sync (code 1211)",
    1213: "an Akool subscription is required (code 1213)",
    1221: "an Akool subscription is required (code 1221)",
}
# The largest JSON body we accept from Akool; a job record is a few hundred bytes.
MAX_BODY_BYTES = 1024 * 1024
# How long a call may wait in the worker for its budget slot: not at all; a later slot is a
# Celery countdown (SlotReserved). A pool process asleep here makes other jobs' slots late,
# and late slots go out together (measured: 7 calls in a second at AKOOL_MAX_RPS=4 with 2 s).
BUDGET_WAIT_SECONDS = 0.0
# Statuses whose Retry-After header we honour, and the longest wait we take from it: a
# misconfigured proxy must not park a job for hours.
RETRY_AFTER_STATUSES = (429, 503)
MAX_RETRY_AFTER_SECONDS = 600.0
# Delay-seconds only (RFC 9110 allows integers; a decimal fraction is accepted too). An
# HTTP-date is ignored: it depends on clocks agreeing, and Akool is not known to send one.
_RETRY_AFTER_SECONDS = re.compile(r"[0-9]{1,10}(\.[0-9]{1,6})?")

# Akool's answers that ask the whole fleet to slow down (its rate is cut, see ratelimit.py).
CODE_TOO_FREQUENT = 1005
HTTP_TOO_MANY_REQUESTS = 429


def error_for_code(code: int, msg: str, *, url: str | None = None) -> AkoolError:
    """The typed error for a non-1000 business code (unknown codes are permanent)."""
    if code == CODE_TOO_FREQUENT:
        return AkoolBusy(TRANSIENT_CODES[code], code=code, url=url)
    if code in TRANSIENT_CODES:
        return AkoolTransientError(TRANSIENT_CODES[code], code=code, url=url)
    if code in AUTH_CODES:
        return AkoolAuthError(AUTH_CODES[code], code=code, url=url)
    text = PERMANENT_CODES.get(code)
    if text is None:
        shown = msg[:200] if msg else "no message"
        text = f"Akool answered with error code {code} ({shown})"
    return AkoolPermanentError(text, code=code, url=url)


class AkoolClient:
    """A client for Akool's lip-sync endpoints.

    Authenticates with `api_key` (header x-api-key) or with `client_id` + `client_secret`
    (a getToken token, cached and fetched again once when Akool answers code 1101).
    With a `budget`, every HTTP request (getToken included) first takes a slot of it,
    waiting at most `budget_wait` seconds; otherwise it raises SlotReserved (or, the queue
    being too long, AkoolRateLimited) unsent. A 1005 or 429 slows the budget down.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: Secret | None = None,
        client_id: str | None = None,
        client_secret: Secret | None = None,
        session: requests.Session | None = None,
        timeout: float = AKOOL_TIMEOUT_SECONDS,
        budget: RequestBudget | None = None,
        budget_wait: float = BUDGET_WAIT_SECONDS,
        observer: Callable[[str, str], None] | None = None,
    ) -> None:
        if api_key is None and (client_id is None or client_secret is None):
            raise ValueError("AkoolClient needs api_key, or client_id and client_secret")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._client_id = client_id
        self._client_secret = client_secret
        self._session = session or requests.Session()
        self._timeout = (min(AKOOL_CONNECT_TIMEOUT_SECONDS, timeout), timeout)
        self._token: Secret | None = None
        self._token_lock = threading.Lock()
        self._budget = budget
        self._budget_wait = budget_wait
        # Told (endpoint, outcome) after every call that was sent: for metrics.
        self._observer = observer

    def __repr__(self) -> str:
        return f"AkoolClient({self.base_url!r})"

    def submit(
        self,
        video_url: str,
        audio_url: str,
        webhook_url: str | None = None,
        *,
        before_send: Callable[[], None] | None = None,
    ) -> str:
        """Create a lip-sync job and return Akool's `_id` for polling.

        `before_send` runs right before the POST leaves (after any wait for the request
        budget, after a token fetch): the caller's last chance to record or refuse the send.
        """
        body: dict[str, str] = {"video_url": video_url, "audio_url": audio_url}
        if webhook_url:
            body["webhookUrl"] = webhook_url
        data = self._call("POST", LIPSYNC_PATH, json=body, before_send=before_send)
        return require_id(data, self.base_url + LIPSYNC_PATH)

    def submit_kind(
        self,
        kind: str,
        body: Mapping[str, Any],
        webhook_url: str | None = None,
        *,
        before_send: Callable[[], None] | None = None,
    ) -> str:
        """Create a job of another kind (worker/akool/kinds.py) from its Akool `body`, with
        `webhook_url` in the kind's own webhook field; return Akool's `_id`, as `submit`."""
        row = KINDS[kind]
        sent = dict(body)
        if webhook_url:
            sent[row.webhook_field] = webhook_url
        data = self._call("POST", row.submit_path, json=sent, before_send=before_send)
        return require_id(data, self.base_url + row.submit_path)

    def status(self, akool_id: str) -> AkoolStatus:
        """Poll one job: its video_status and, once completed, the result URL."""
        data = self._call("GET", STATUS_PATH, params={"video_model_id": akool_id})
        return parse_status(akool_id, data, self.base_url + STATUS_PATH)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One authenticated call; when a cached token is refused (1101), one fresh token."""
        cached_token = self._token is not None
        try:
            return self._request(method, path, self._auth_headers(), **kwargs)
        except AkoolAuthError as e:
            if e.code != CODE_TOKEN_INVALID or self._api_key is not None or not cached_token:
                raise
            logger.info("Akool refused the cached token (code 1101); fetching a new one once")
            self._token = None
            return self._request(method, path, self._auth_headers(), **kwargs)

    def _auth_headers(self) -> dict[str, str]:
        if self._api_key is not None:
            return {"x-api-key": self._api_key.reveal()}
        return {"Authorization": f"Bearer {self._get_token().reveal()}"}

    def _get_token(self) -> Secret:
        with self._token_lock:
            if self._token is None:
                self._token = self._fetch_token()
            return self._token

    def _fetch_token(self) -> Secret:
        assert self._client_id is not None and self._client_secret is not None
        body = {"clientId": self._client_id, "clientSecret": self._client_secret.reveal()}
        envelope = self._send("POST", TOKEN_PATH, {}, json=body)
        token = envelope.get("token")
        if not isinstance(token, str) or not token:
            raise AkoolTransientError(
                "Akool's getToken answer carried no token", url=self.base_url + TOKEN_PATH
            )
        return Secret(token)

    def _request(self, method: str, path: str, headers: dict[str, str], **kwargs: Any) -> Any:
        # kwargs may carry before_send (see submit) down to _http.
        envelope = self._send(method, path, headers, **kwargs)
        return envelope.get("data")

    def _send(
        self, method: str, path: str, headers: dict[str, str], **kwargs: Any
    ) -> dict[str, Any]:
        endpoint = ENDPOINT_NAMES.get(path, path)
        try:
            envelope = self._exchange(method, path, headers, **kwargs)
        except AkoolRateLimited:
            raise  # never sent: not a call
        except AkoolError as e:
            self._observe(endpoint, _outcome(e))
            self._slow_down_if_asked(e)
            raise
        self._observe(endpoint, "ok")
        return envelope

    def _slow_down_if_asked(self, error: AkoolError) -> None:
        """A 1005 or 429 cuts the fleet's rate (and honours Retry-After); best effort, so the
        caller still sees Akool's error when Redis is away."""
        asked = error.code == CODE_TOO_FREQUENT or error.status == HTTP_TOO_MANY_REQUESTS
        if self._budget is None or not asked:
            return
        try:
            self._budget.slow_down(error.retry_after)
        except LipsyncError as trouble:
            logger.warning("Could not slow the request budget down: %s", trouble)

    def book_next(self, not_before: float) -> tuple[float, float | None]:
        """Book a later request's slot (the next poll), `not_before` s away or more: (wait,
        the slot's epoch time); (not_before, None) when the queue is shorter than that."""
        if self._budget is None:
            return not_before, None
        return self._budget.book_next(not_before)

    def _observe(self, endpoint: str, outcome: str) -> None:
        if self._observer is not None:
            self._observer(endpoint, outcome)

    def _exchange(
        self, method: str, path: str, headers: dict[str, str], **kwargs: Any
    ) -> dict[str, Any]:
        url = self.base_url + path
        response = self._http(method, url, headers, **kwargs)
        with response:
            retry_after = None
            if response.status_code in RETRY_AFTER_STATUSES:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
            body = _read_limited(response, url)
            envelope = parse_envelope(response.status_code, body, url, retry_after=retry_after)
        code = envelope["code"]
        if code != CODE_OK:
            raise error_for_code(code, str(envelope.get("msg") or ""), url=url)
        return envelope

    def _http(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        *,
        before_send: Callable[[], None] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        if self._budget is not None:
            # Before the request, so a spent budget sends nothing to Akool.
            self._budget.take(self._budget_wait)
        if before_send is not None:
            before_send()
        try:
            return self._session.request(
                method,
                url,
                headers=headers,
                timeout=self._timeout,
                stream=True,
                allow_redirects=False,
                **kwargs,
            )
        except (requests.ConnectTimeout, requests.exceptions.InvalidURL) as e:
            raise AkoolRequestNotSent(f"could not connect to Akool at {url}", url=url) from e
        except requests.ConnectionError as e:
            if _never_sent(e):
                raise AkoolRequestNotSent(f"could not connect to Akool at {url}", url=url) from e
            raise AkoolTransientError(f"the connection to Akool at {url} broke", url=url) from e
        except requests.Timeout as e:
            raise AkoolTransientError(f"Akool did not answer in time at {url}", url=url) from e
        except requests.RequestException as e:
            raise AkoolTransientError(f"request to Akool at {url} failed", url=url) from e


# Every kind's submit is counted as a submit: the label's values stay few.
ENDPOINT_NAMES = {
    TOKEN_PATH: "token",
    STATUS_PATH: "status",
    **{kind.submit_path: "submit" for kind in KINDS.values()},
}


def _outcome(error: AkoolError) -> str:
    """A short label for a failed call: its business code, HTTP status, or 'network'."""
    if error.code is not None:
        return f"code_{error.code}"
    if error.status is not None:
        return f"http_{error.status}"
    return "network" if isinstance(error, AkoolTransientError) else "invalid"


def _never_sent(error: requests.ConnectionError) -> bool:
    """True when the connection was refused or never opened: nothing reached Akool."""
    text = repr(error.args[0]) if error.args else ""
    return "NewConnectionError" in text or "NameResolutionError" in text


def _read_limited(response: requests.Response, url: str) -> bytes:
    """The body, at most MAX_BODY_BYTES; a larger or broken body is a transient error."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(64 * 1024):
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise AkoolTransientError(
                    f"Akool's answer was larger than {MAX_BODY_BYTES} bytes",
                    status=response.status_code,
                    url=url,
                )
            chunks.append(chunk)
    except requests.RequestException as e:
        raise AkoolTransientError(
            "the answer from Akool broke off", status=response.status_code, url=url
        ) from e
    return b"".join(chunks)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header, capped at MAX_RETRY_AFTER_SECONDS; None when the
    header is absent, an HTTP-date or garbage."""
    if value is None or not _RETRY_AFTER_SECONDS.fullmatch(value.strip()):
        return None
    return min(float(value.strip()), MAX_RETRY_AFTER_SECONDS)


def parse_envelope(
    http_status: int, body: bytes, url: str, *, retry_after: float | None = None
) -> dict[str, Any]:
    """Check the HTTP status and decode `{code, msg, data}`; anything else is typed.

    `retry_after` (from Akool's Retry-After header) is carried by the error of a 429 or 5xx.
    """
    if http_status == HTTP_TOO_MANY_REQUESTS:
        raise AkoolBusy(
            f"Akool answered HTTP {http_status}",
            status=http_status,
            url=url,
            retry_after=retry_after,
        )
    if http_status >= 500:
        raise AkoolTransientError(
            f"Akool answered HTTP {http_status}",
            status=http_status,
            url=url,
            retry_after=retry_after,
        )
    try:
        envelope = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise AkoolTransientError(
            f"Akool answered HTTP {http_status} with a body that is not JSON",
            status=http_status,
            url=url,
        ) from e
    code = envelope.get("code") if isinstance(envelope, dict) else None
    if not isinstance(code, int) or isinstance(code, bool):
        if http_status >= 400:
            raise AkoolPermanentError(
                f"Akool answered HTTP {http_status}", status=http_status, url=url
            )
        raise AkoolTransientError(
            "Akool answered without a business code", status=http_status, url=url
        )
    assert isinstance(envelope, dict)
    return envelope
