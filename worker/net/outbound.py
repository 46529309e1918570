"""The notification's POST: a record sent as JSON to an application's URL (notify_url), under
NOTIFY_ALLOWED_HOSTS and the address rules of the archive's downloads (worker/net/guard.py).

The URL's host is resolved once and every address checked before connecting; the POST goes
to a checked address, over https (plain http or another port only for a host listed
exactly), and the address the socket reached is checked again. A redirect is an answer,
never followed. Only the answer's status is used: its body is never read (stream=True, then
closed), so neither a huge nor a trickling answer can fill or hold a worker; what the socket
buffered with the headers (a few KiB) is all that ever comes in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import requests

from worker.errors import NotifyFailed, NotifyRefused
from worker.net.guard import (
    check_peer_address,
    checked_address,
    pinned_session,
    send_pinned,
    split_url,
)

ALLOWED_SETTING = "NOTIFY_ALLOWED_HOSTS"


def post_json(
    url: str,
    payload: Any,
    *,
    allowed_hosts: Iterable[str],
    timeout: float,
    session: requests.Session | None = None,
) -> int:
    """POST `payload` as JSON to `url` under `allowed_hosts`; the answer's HTTP status (a 3xx
    too: it is returned, not followed).

    Raises NotifyRefused when the URL is refused (nothing is sent) and NotifyFailed when it
    cannot be reached now. Messages name the host, never the URL, which may carry the
    application's token. `session`, if given, is made a pinned one (worker/net/guard.py).
    """
    patterns = tuple(allowed_hosts)
    host, address = _destination(url, patterns)
    pinned = pinned_session(session)
    try:
        return _post(pinned, address, url, payload, host, patterns, timeout)
    finally:
        if session is None:
            pinned.close()


def _destination(url: str, patterns: tuple[str, ...]) -> tuple[str, str]:
    """The URL's host and the checked address to POST to, or the error saying why not."""
    try:
        scheme, host, port = split_url(url)
    except ValueError as e:
        raise NotifyRefused(f"notify_url {e}; nothing is sent") from None
    try:
        return host, checked_address(scheme, host, port, patterns, ALLOWED_SETTING)
    except ValueError as e:
        raise NotifyRefused(f"notify_url {e}; nothing is sent") from None
    except OSError as e:
        raise NotifyFailed(f"notify_url host {host!r} could not be resolved ({e})") from e


def _post(
    session: requests.Session,
    address: str,
    url: str,
    payload: Any,
    host: str,
    patterns: tuple[str, ...],
    timeout: float,
) -> int:
    """Send the POST to `address` and return the status, closing the answer unread."""
    try:
        response = send_pinned(
            session, address, "POST", url, json=payload, stream=True, timeout=timeout
        )
    except requests.RequestException as e:
        why = type(e).__name__
        # Not chained: requests' message quotes the URL's path and query (the token).
        raise NotifyFailed(f"notify_url host {host} could not be reached ({why})") from None
    with response:  # closed with its body unread: memory and time stay bounded
        try:
            check_peer_address(response, host, patterns, ALLOWED_SETTING)
        except ValueError as e:
            raise NotifyRefused(f"notify_url {e}") from None
        return response.status_code
