"""Where a fetch may go: the address rules that keep downloads and notifications out of the
internal network, and the connection that goes to the address those rules checked.

A host that resolves to a loopback, private, link-local, site-local, documentation or cloud
metadata address is reached only when that exact host is listed in the allow-list; a
wildcard is not enough. Every address the host resolves to is checked, once, and the
connection is then made to one of those addresses (`PinnedAdapter`), never to a second
answer of DNS; the address the socket reached is checked again. Only https on port 443 is
used, except for a host listed exactly (`transport_refusal`).
"""

from __future__ import annotations

import contextlib
import fnmatch
import ipaddress
import os
import re
import socket
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.exceptions import InvalidURL
from urllib3 import HTTPConnectionPool

# Cloud metadata endpoints (AWS IPv4 and IPv6, Alibaba): they hand out credentials.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
# The NAT64 well-known prefix: on a NAT64 network 64:ff9b::a.b.c.d reaches a.b.c.d.
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
# Ranges `ipaddress` may call global although nothing public lives there: site-local
# (deprecated, still routed inside some networks) and the documentation ranges (3fff::/20 is
# newer than this Python's tables).
NOT_PUBLIC_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "fec0::/10",
        "2001:db8::/32",
        "3fff::/20",
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
    )
)
GLOB_CHARACTERS = re.compile(r"[*?\[]")
HTTPS_PORT = 443
DEFAULT_PORTS = {"http": 80, "https": HTTPS_PORT}


def host_allowed(host: str, patterns: Iterable[str]) -> bool:
    """True when `host` matches one pattern (`*.example.com` matches any subdomain)."""
    host = host.lower().rstrip(".")
    return any(fnmatch.fnmatchcase(host, p.lower()) for p in patterns)


def _reached_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped or NAT64 IPv6 address really reaches, if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_internal_address(ip: str) -> bool:
    """True for an address a fetch must not reach by default: loopback, private, link-local,
    site-local, documentation, reserved, multicast, unspecified, shared (CGNAT) or cloud
    metadata, also in IPv4-mapped form. Something that is not an IP address at all counts
    as internal."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])  # drop an IPv6 zone (%eth0)
    except ValueError:
        return True
    if isinstance(address, ipaddress.IPv6Address):
        reached = _reached_ipv4(address)
        if reached is not None:
            return is_internal_address(str(reached))
        # A 6to4 address embedding an internal IPv4 address is suspect in itself.
        if address.sixtofour is not None and is_internal_address(str(address.sixtofour)):
            return True
    return (
        address in METADATA_ADDRESSES
        or address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
        or not address.is_global
        or any(address in network for network in NOT_PUBLIC_NETWORKS)
    )


def listed_exactly(host: str, patterns: Iterable[str]) -> bool:
    """True when one pattern names `host` itself rather than matching it as a wildcard."""
    host = host.lower().rstrip(".")
    return any(not GLOB_CHARACTERS.search(p) and p.lower().rstrip(".") == host for p in patterns)


def address_allowed(host: str, ip: str, patterns: Iterable[str]) -> bool:
    """True when `host`, reached at address `ip`, may be fetched.

    The host must match a pattern; if `ip` is internal (`is_internal_address`), the host
    must moreover be listed exactly, so that `*.example.com` cannot lead into the network.
    """
    patterns = tuple(patterns)
    if not host_allowed(host, patterns):
        return False
    return not is_internal_address(ip) or listed_exactly(host, patterns)


def split_url(url: str) -> tuple[str, str, int]:
    """The scheme, host and port of an http(s) URL; ValueError saying what is wrong with it
    (never quoting it: a URL may carry a token)."""
    # A backslash or control character is read differently by urlsplit and by urllib3,
    # which could connect to another host than the one checked here.
    if any(c == "\\" or ord(c) <= 32 or ord(c) == 127 for c in url):
        raise ValueError("contains characters a URL may not")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        raise ValueError("cannot be parsed") from None
    if parts.scheme not in DEFAULT_PORTS or not host:
        raise ValueError("is not an http(s) URL with a host")
    return parts.scheme, host, port or DEFAULT_PORTS[parts.scheme]


def transport_refusal(
    scheme: str, host: str, port: int, patterns: Iterable[str], setting: str
) -> str | None:
    """Why `scheme` or `port` may not be used for `host`, or None when they may.

    Only https on port 443, except for a host listed exactly in `setting` (the allow-list's
    variable, named in the answer): plain http can be read and changed on its way, and
    another port on a public host is another service than its web server.
    """
    if listed_exactly(host, patterns):
        return None
    if scheme != "https":
        return (
            f"uses plain {scheme}: only https is used, except for a host listed exactly "
            f"in {setting}"
        )
    if port != HTTPS_PORT:
        return (
            f"uses port {port}: only port {HTTPS_PORT} is used, except for a host listed "
            f"exactly in {setting}"
        )
    return None


def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to now, in the resolver's order, each once.

    Raises OSError when the lookup fails or answers nothing (callers fail closed: nothing is
    sent to a host whose addresses were not checked) and ValueError (UnicodeError) for a name
    that cannot be encoded.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise socket.gaierror(socket.EAI_NONAME, f"{host} resolves to no address")
    return addresses


def checked_address(
    scheme: str, host: str, port: int, patterns: Iterable[str], setting: str
) -> str:
    """The address to connect to for `host`: the first it resolves to, every one checked.

    ValueError says why the destination is refused, in words naming `setting` (the host is
    not in it, resolves to an internal address without being listed exactly, or breaks the
    https rule of `transport_refusal`); OSError that the lookup failed, and nothing may be
    sent (fail closed).
    """
    patterns = tuple(patterns)
    if not host_allowed(host, patterns):
        raise ValueError(f"host {host!r} is not in {setting}")
    try:
        addresses = resolve(host, port)
    except UnicodeError:
        raise ValueError(f"host {host!r} is not a valid name") from None
    for ip in addresses:
        if not address_allowed(host, ip, patterns):
            raise ValueError(_internal(host, ip, "resolves to", setting))
    why = transport_refusal(scheme, host, port, patterns, setting)
    if why is not None:
        raise ValueError(f"host {host!r} {why}")
    return addresses[0]


def check_peer_address(
    response: requests.Response, host: str, patterns: Iterable[str], setting: str
) -> None:
    """Close `response` and raise ValueError when its socket reached an address that
    `address_allowed` refuses for `host` (defence in depth: the connection was pinned)."""
    ip = peer_address(response)
    if ip is not None and not address_allowed(host, ip, patterns):
        response.close()
        raise ValueError(_internal(host, ip, "connected to", setting))


def _internal(host: str, ip: str, when: str, setting: str) -> str:
    return (
        f"host {host!r} {when} a private or internal address ({ip}); such a host is reached "
        f"only when it is listed exactly in {setting}"
    )


def leaves_https(url: str, target: str) -> bool:
    """True when a redirect from `url` to `target` leaves https: what https protected would
    travel in the clear, whichever host is listed."""
    return _scheme(url) == "https" and _scheme(target) != "https"


def _scheme(url: str) -> str:
    return url.strip().partition(":")[0].lower()


def host_header(url: str) -> str:
    """The Host header for `url`: its host, and its port unless that is the scheme's default."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    name = f"[{host}]" if ":" in host else host
    port = parts.port
    return name if port is None or port == DEFAULT_PORTS.get(parts.scheme) else f"{name}:{port}"


class PinnedAdapter(HTTPAdapter):
    """Sends each request to the IP address it was pinned to (`pin`), never resolving its
    host again, and refuses a request that was not pinned.

    The URL keeps the host's name: TLS sends it as SNI and checks the certificate against it,
    and the Host header carries it, so only the address the socket goes to changes.
    """

    def __init__(self) -> None:
        super().__init__()
        self._pins: weakref.WeakKeyDictionary[requests.PreparedRequest, str] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()  # one archiver or session may serve several threads

    def pin(self, request: requests.PreparedRequest, address: str) -> None:
        """Send `request` to `address`, an address its host was checked to resolve to."""
        with self._lock:
            self._pins[request] = address

    def unpin(self, request: requests.PreparedRequest) -> None:
        """Forget `request`'s address (it is sent)."""
        with self._lock:
            self._pins.pop(request, None)

    def pinned(self, request: requests.PreparedRequest) -> str:
        """The address `request` goes to; RuntimeError when nobody pinned it (a bug, and
        failing closed: it is not sent)."""
        with self._lock:
            address = self._pins.get(request)
        if address is None:
            raise RuntimeError("a request whose address was not checked is never sent")
        return address

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send `request` to its pinned address, with the original Host header, never
        through a proxy (a proxy would resolve the name again itself)."""
        self.pinned(request)
        request.headers["Host"] = host_header(request.url or "")
        return super().send(request, stream, timeout, verify, cert, proxies={})

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: Any,
        proxies: Mapping[str, str] | None = None,
        cert: Any = None,
    ) -> HTTPConnectionPool:
        """A pool for the pinned address whose TLS proves the URL's host name."""
        address = self.pinned(request)
        try:
            host_params, pool_kwargs = self.build_connection_pool_key_attributes(
                request, verify, cert
            )
        except ValueError as e:
            raise InvalidURL(e, request=request) from e
        tls: dict[str, Any] = dict(pool_kwargs)
        if host_params["scheme"] == "https":
            # SNI and the certificate check on the name, not on the IP the socket goes to
            # (without its trailing dot, as urllib3 does for an unpinned name).
            name = host_params["host"].rstrip(".")
            tls.update(server_hostname=name, assert_hostname=name)
        host_params["host"] = address
        return self.poolmanager.connection_from_host(**host_params, pool_kwargs=tls)


def pinned_session(session: requests.Session | None = None) -> requests.Session:
    """`session` (or a new one) sending http(s) through a PinnedAdapter only (`send_pinned`)."""
    session = session if session is not None else requests.Session()
    # No proxy from the environment: a proxy connects to the name itself, resolving it
    # again, which would make the address checked here meaningless. trust_env also drops
    # REQUESTS_CA_BUNDLE, which moves no connection: it is honoured by hand.
    session.trust_env = False
    session.proxies.clear()
    if session.verify is True:
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        session.verify = bundle or True
    adapter = PinnedAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def send_pinned(
    session: requests.Session, address: str, method: str, url: str, **options: Any
) -> requests.Response:
    """Send `method url` through a `pinned_session`, connected to `address` (one that the
    URL's host was checked to resolve to). Redirects are never followed here: each hop must
    be checked and pinned by the caller. `options`: json, stream, timeout."""
    adapter = session.get_adapter(url)
    if not isinstance(adapter, PinnedAdapter):
        raise TypeError("send_pinned needs a session made by pinned_session")
    json = options.pop("json", None)
    request = session.prepare_request(requests.Request(method, url, json=json))
    adapter.pin(request, address)
    try:
        return session.send(request, allow_redirects=False, **options)
    finally:
        adapter.unpin(request)


def peer_address(response: requests.Response) -> str | None:
    """The IP address the response's socket is connected to, or None when unknown.

    Behind a proxy the peer is the proxy, not the file host, so that also gives None.
    """
    # requests' raw is urllib3's HTTPResponse; `connection` is public from urllib3 2.
    connection = getattr(response.raw, "connection", None)
    if getattr(connection, "has_connected_to_proxy", False):
        return None
    try:
        peer = _response_socket(response.raw, connection).getpeername()
    except (AttributeError, OSError):
        return None
    return str(peer[0]) if isinstance(peer, tuple) and peer else None


def sever(response: requests.Response) -> None:
    """Cut a streamed response off at once, safely from another thread or a signal handler:
    its socket is shut down first, which wakes a read blocked on it (closing alone does
    not), then the response is closed."""
    with contextlib.suppress(Exception):
        raw = response.raw
        sock = _response_socket(raw, getattr(raw, "connection", None))
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        response.close()


def _response_socket(raw: Any, connection: Any) -> Any:
    """The socket a streamed urllib3 response reads from, or None."""
    sock = getattr(connection, "sock", None)
    if sock is not None:
        return sock
    # http.client lets go of the connection's socket when the response will close it
    # (HTTP/1.0, "Connection: close"); the response's buffered reader still holds it.
    reader = getattr(getattr(raw, "_fp", None), "fp", None)
    return getattr(getattr(reader, "raw", None), "_sock", None)
