"""What crosses the network from untrusted input: the address rules and pinned
connections (guard), the outbound POST (outbound), and bounds on untrusted text, numbers
and URLs (untrusted).
"""

from __future__ import annotations

from worker.net.guard import (
    check_peer_address,
    checked_address,
    leaves_https,
    pinned_session,
    send_pinned,
    sever,
    split_url,
)
from worker.net.outbound import (
    post_json,
)
from worker.net.untrusted import (
    MAX_URL_CHARS,
    ascii_int,
    escape_controls,
    http_url,
    unsafe_char,
)

__all__ = [
    "MAX_URL_CHARS",
    "ascii_int",
    "check_peer_address",
    "checked_address",
    "escape_controls",
    "http_url",
    "leaves_https",
    "pinned_session",
    "post_json",
    "send_pinned",
    "sever",
    "split_url",
    "unsafe_char",
]
