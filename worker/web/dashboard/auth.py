"""Who may see the dashboard (HTTP basic auth) and whether a form was sent by its own page
(CSRF tokens). Plain functions of their inputs; the app only calls them."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

# How long a retry form stays valid after its page was rendered. A page left open longer
# (a running job's page renders itself again every few seconds, so rarely) is reloaded.
CSRF_MAX_AGE_SECONDS = 3600
# The server's CSRF key: random at each start, so a restart invalidates open forms.
CSRF_KEY_BYTES = 32
REALM = "lipsync dashboard"
CHALLENGE = f'Basic realm="{REALM}", charset="UTF-8"'


def _digest(text: str) -> bytes:
    # Compared as fixed-length digests, so the time taken says nothing of the length either.
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """The (user, password) an `Authorization: Basic ...` header carries; None when absent or
    malformed."""
    scheme, _, encoded = (header or "").strip().partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else None


def authorized_user(header: str | None, user: str, password: str) -> str | None:
    """The user when the header names `user` with `password`, else None. Both are compared
    in constant time, and both always (no early exit on a wrong user)."""
    given = basic_credentials(header) or ("", "")
    user_ok = hmac.compare_digest(_digest(given[0]), _digest(user))
    password_ok = hmac.compare_digest(_digest(given[1]), _digest(password))
    return user if (user_ok and password_ok and header) else None


class CsrfTokens:
    """Tokens that tie a form to the signed-in user: "<issued epoch s>.<HMAC of user and
    time>" with a key made at start. A token is good for CSRF_MAX_AGE_SECONDS, for that user."""

    def __init__(self, key: bytes | None = None, max_age: float = CSRF_MAX_AGE_SECONDS) -> None:
        self._key = key if key is not None else secrets.token_bytes(CSRF_KEY_BYTES)
        self._max_age = max_age

    def issue(self, user: str, now: float) -> str:
        """A token for a form rendered for `user` at `now`."""
        issued = str(int(now))
        return f"{issued}.{self._mac(user, issued)}"

    def valid(self, token: str | None, user: str, now: float) -> bool:
        """True for a token this server issued to `user` less than max_age ago."""
        issued, _, mac = (token or "").partition(".")
        if not (issued.isascii() and issued.isdigit() and len(issued) <= 12):
            return False
        fresh = 0 <= now - int(issued) <= self._max_age
        expected = self._mac(user, issued).encode()
        return hmac.compare_digest(mac.encode("utf-8", "surrogateescape"), expected) and fresh

    def _mac(self, user: str, issued: str) -> str:
        message = f"{issued}\n{user}".encode("utf-8", "surrogateescape")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()
