"""Text from strangers (HTTP headers, callback bodies, URLs): numbers are read as ASCII
decimal only, and control characters are escaped before they reach a log line.

A leaf module: no settings, no project imports.
"""

from __future__ import annotations

from urllib.parse import urlsplit

# The longest URL taken from a stranger (as for the URLs a job is submitted with).
MAX_URL_CHARS = 8192
# Up to 18 digits always fits in a signed 64-bit integer; no timestamp or body is longer.
MAX_INT_DIGITS = 18
# C0 controls, DEL and C1 controls as \xNN, and the backslash doubled so that an escape in a
# log line is never ambiguous (as http.server does). U+2028/U+2029 end a line for some readers.
_LOG_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))} | {
    ord("\\"): "\\\\",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def ascii_int(text: str, max_digits: int = MAX_INT_DIGITS) -> int | None:
    """`text` as an int when it is 1 to `max_digits` ASCII digits [0-9]; None otherwise.

    Neither str.isdigit() nor int() will do: "²".isdigit() is true but int("²") fails, int()
    reads Arabic-Indic and full-width digits, and it takes signs, spaces and underscores.
    """
    if not 0 < len(text) <= max_digits or not text.isascii() or not text.isdigit():
        return None
    return int(text)


def escape_controls(text: str) -> str:
    """`text` safe for one log line: C0 controls, DEL and C1 controls escaped as \\xNN,
    U+2028 and U+2029 as \\uNNNN, and a backslash doubled."""
    return text.translate(_LOG_ESCAPES)


def unsafe_char(char: str) -> bool:
    """True for whitespace of any kind and for control characters (C0, DEL, C1)."""
    return char.isspace() or char < " " or "\x7f" <= char <= "\x9f"


def http_url(value: object) -> str | None:
    """`value` when it is an http(s) URL with a host, at most MAX_URL_CHARS long, without
    whitespace, control characters or `user:password@`; None otherwise ("null", "", a
    number, a relative path...)."""
    if not isinstance(value, str) or not 0 < len(value) <= MAX_URL_CHARS:
        return None
    if any(unsafe_char(c) for c in value):
        return None
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not host or "@" in parts.netloc:
        return None
    return value
