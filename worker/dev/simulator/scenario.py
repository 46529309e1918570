"""Per-job behaviour scripted by the ``sim_*`` query parameters of a submitted video_url.

The submitted ``video_url`` is never fetched: its ``sim_*`` parameters only tell the simulator
how to treat the job (how many polls until done, which errors to answer and how often, how to
serve the file, when to call back). ``Scenario`` lists them; ``parse_scenario`` reads them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger(__name__)

# Printable ASCII only: a scripted header value must not be able to split the answer.
_HEADER_SAFE = frozenset(chr(c) for c in range(0x20, 0x7F))


@dataclass
class Scenario:
    """Behaviour scripted by the ``sim_*`` query parameters of a submitted video_url."""

    polls: int = 2
    seconds: float = 0.0
    final: int = 3
    submit_code: int | None = None
    submit_code_times: int | None = None
    submit_http: int | None = None
    submit_http_times: int = 1
    # With submit_http: create the job (paid for, its callbacks sent to the submit's
    # webhookUrl as usual) before answering the error, as Akool's gateway can.
    submit_http_after_create: bool = False
    poll_code: int | None = None
    poll_code_times: int | None = None
    poll_http: int | None = None
    poll_http_times: int = 1
    size: int | None = None
    file: str = "ok"
    # With sim_file set to an error: only the first file_times downloads answer it (None:
    # all), as a CDN that has not got the file yet does.
    file_times: int | None = None
    # The result URLs of the first file_gone_urls completed answers (polls and callbacks)
    # are dead links answering 404, as an expired signed URL; later answers give live ones.
    file_gone_urls: int = 0
    # The first bad_video_times completed poll answers carry this text as `video` instead of
    # the result URL (for example "null"), as Akool's answer sometimes does.
    bad_video: str | None = None
    bad_video_times: int = 1
    truncate_times: int = 0
    file_delay: float = 0.0
    # Bytes a second a download is streamed at (None: as fast as it goes), for the first
    # file_rate_times downloads (None: all of them).
    file_rate: int | None = None
    file_rate_times: int | None = None
    submit_delay: float = 0.0
    retry_after: str | None = None
    redirect: str | None = None
    webhook: bool = True
    webhook_delay: float = 0.0
    webhook_progress: bool = False
    # What a failed (status 4) lookup of a kind that reports errors (video translation)
    # answers as error_code and error_reason; the reason may be any text, even hostile.
    error_code: int = 1001
    error_reason: str = "simulated failure"


_INT_PARAMS = {
    "sim_polls": "polls",
    "sim_final": "final",
    "sim_submit_code": "submit_code",
    "sim_submit_code_times": "submit_code_times",
    "sim_submit_http": "submit_http",
    "sim_submit_http_times": "submit_http_times",
    "sim_poll_code": "poll_code",
    "sim_poll_code_times": "poll_code_times",
    "sim_poll_http": "poll_http",
    "sim_poll_http_times": "poll_http_times",
    "sim_size": "size",
    "sim_file_times": "file_times",
    "sim_file_gone_urls": "file_gone_urls",
    "sim_bad_video_times": "bad_video_times",
    "sim_truncate_times": "truncate_times",
    "sim_file_rate": "file_rate",
    "sim_file_rate_times": "file_rate_times",
    "sim_error_code": "error_code",
}
_FLOAT_PARAMS = {
    "sim_seconds": "seconds",
    "sim_file_delay": "file_delay",
    "sim_submit_delay": "submit_delay",
    "sim_webhook_delay": "webhook_delay",
}
# On with 1, off with anything else.
_FLAG_PARAMS = {
    "sim_submit_http_after_create": "submit_http_after_create",
    "sim_webhook": "webhook",
    "sim_webhook_progress": "webhook_progress",
}


def parse_scenario(video_url: str) -> Scenario:
    """Read the ``sim_*`` query parameters of ``video_url``; malformed values are ignored."""
    scenario = Scenario()
    params = parse_qs(urlsplit(video_url).query)
    for name, values in params.items():
        value = values[-1]
        try:
            if name in _INT_PARAMS:
                setattr(scenario, _INT_PARAMS[name], int(value))
            elif name in _FLOAT_PARAMS:
                setattr(scenario, _FLOAT_PARAMS[name], float(value))
        except ValueError:
            logger.warning("ignoring malformed simulator parameter %s", name)
    if "sim_file" in params:
        scenario.file = params["sim_file"][-1]
    if "sim_bad_video" in params:
        scenario.bad_video = params["sim_bad_video"][-1]
    if "sim_error_reason" in params:
        # Kept as given (control characters, any length): it only travels inside JSON.
        scenario.error_reason = params["sim_error_reason"][-1]
    for name, attribute in _FLAG_PARAMS.items():
        if name in params:
            setattr(scenario, attribute, params[name][-1] == "1")
    if "sim_redirect" in params:
        # The file URL answers 302 to this URL (to test the archive's host checks).
        value = params["sim_redirect"][-1]
        scenario.redirect = value if set(value) <= _HEADER_SAFE else None
    if "sim_retry_after" in params:
        # Kept as text so a test can script an HTTP-date or garbage as well as seconds.
        value = params["sim_retry_after"][-1]
        scenario.retry_after = value if set(value) <= _HEADER_SAFE else None
    return scenario


def within(count: int, times: int | None) -> bool:
    """True when the ``count``-th event (1-based) is among the first ``times`` (None: all)."""
    return times is None or count <= times
