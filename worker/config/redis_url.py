"""The forms of REDIS_URL that the broker (kombu), Celery's result backend and the job store
(redis-py) read alike: `redis://` and `unix://`, `rediss://` with its TLS options, and Redis
Sentinel's `sentinel://host:port;sentinel://host:port/db` (kombu's format).

Each check raises a ConfigError naming REDIS_URL that never echoes the URL, which may hold a
password. worker/config/settings.py reads the variables; this module only judges the URL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from worker.errors import ConfigError
from worker.net import ascii_int

# The only options after `?` that all three read alike; kombu fails on any other at its
# first connection (TypeError).
TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
TLS_FILES = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
# The spellings all three accept: redis-py refuses CERT_REQUIRED, which the other two take.
CERT_REQS = ("required", "optional", "none")


@dataclass(frozen=True)
class RedisSentinel:
    """Redis behind Sentinel: the sentinels to ask, the name they know the master by, and
    the master's database and credentials (from REDIS_URL) and the sentinels' password.

    The passwords are left out of the repr (settings.Secret cannot be used here: settings
    imports this module)."""

    addresses: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)


def is_sentinel(url: str) -> bool:
    """True for a sentinel:// REDIS_URL."""
    return url.lower().startswith("sentinel:")


def check_options(url: str) -> None:
    """A redis:// or rediss:// URL's options after `?`: only the TLS ones, only with
    rediss://, `ssl_cert_reqs` spelled as all three read it, and certificate files that
    exist. Without `ssl_cert_reqs` the certificate is required (see celery_config)."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return  # only redis-py reads these (`?db=0`)
    options = parse_qs(parts.query, keep_blank_values=True)
    # The option's name is not echoed: after a `?` in an unencoded password, it is the
    # rest of the password.
    if any(name not in TLS_OPTIONS or len(v) > 1 for name, v in options.items()):
        raise ConfigError(
            "REDIS_URL has an option the broker cannot take: after '?' only "
            f"{', '.join(TLS_OPTIONS)}, each once, with rediss://"
        )
    if parts.scheme == "redis":
        if options:
            raise ConfigError("REDIS_URL has TLS options: use a rediss:// URL")
        return
    cert_reqs = options.get("ssl_cert_reqs", ["required"])[0]
    if cert_reqs not in CERT_REQS:
        raise ConfigError(
            "REDIS_URL's ssl_cert_reqs must be required, optional or none (none checks no "
            f"certificate), got {cert_reqs!r}"
        )
    for name in TLS_FILES:
        path = options.get(name, [""])[0]
        if name in options and not Path(path).is_file():
            raise ConfigError(f"REDIS_URL's {name} is not a file: {path!r}")


def parse_sentinels(url: str, master: str, sentinel_password: str | None) -> RedisSentinel:
    """Sentinels `sentinel://[:password@]host:port[/db]`, separated by `;`.

    Every one must name the same database and credentials, and its port: kombu uses those of
    the sentinel it is connected through (the next one after a failed connection), Celery's
    result backend those of the first, and without a port kombu asks 26379, Celery 6379.
    """
    if any(c.isspace() for c in url):
        raise ConfigError("REDIS_URL must not contain spaces (sentinels are separated by ';')")
    addresses: list[tuple[str, int]] = []
    masters: set[tuple[str, str | None, str | None]] = set()
    for number, address in enumerate(url.split(";"), start=1):
        try:
            parts = urlsplit(address)
            host, port = parts.hostname, parts.port
        except ValueError:
            raise ConfigError(f"REDIS_URL: sentinel {number} is not a valid URL") from None
        if parts.scheme != "sentinel" or not host or not port or parts.query or parts.fragment:
            raise ConfigError(
                f"REDIS_URL: sentinel {number} must be sentinel://host:port, with no options "
                f"(got scheme {parts.scheme!r}, host {host or ''!r}, port {port or ''!r})"
            )
        masters.add((parts.path.strip("/") or "0", parts.username, parts.password))
        addresses.append((host, port))
    if len(masters) > 1:
        raise ConfigError(
            "REDIS_URL: every sentinel must name the same database and password (kombu uses "
            "those of the sentinel it reached, Celery those of the first)"
        )
    db_text, username, password = masters.pop()
    db = ascii_int(db_text)
    if db is None:
        raise ConfigError("REDIS_URL's database (after the last '/') must be a number")
    return RedisSentinel(
        addresses=tuple(addresses),
        master=master,
        db=db,
        username=unquote(username) if username else None,
        password=unquote(password) if password else None,
        sentinel_password=sentinel_password,
    )
