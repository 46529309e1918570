"""Where a fetch may go: the address rules that keep downloads out of the internal network.

A host that resolves to a loopback, private, link-local, site-local, documentation or cloud
metadata address is fetched only when that exact host is listed in the allow-list; a
wildcard is not enough. The archiver applies these rules to every address a host resolves to
before connecting, on every redirect hop, and to the address the socket actually reached.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable
from typing import Any

import requests

# Cloud metadata endpoints (AWS IPv4 and IPv6, Alibaba): they hand out credentials.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
# The NAT64 well-known prefix: on a NAT64 network 64:ff9b::a.b.c.d reaches a.b.c.d.
NAT64_PREFIX = ipaddress.ip_network("64:ff9b::/96")
GLOB_CHARACTERS = re.compile(r"[*?\[]")


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
    reserved, multicast, unspecified, shared (CGNAT) or cloud metadata, also in IPv4-mapped
    form. Something that is not an IP address at all counts as internal."""
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
    )


def _listed_exactly(host: str, patterns: Iterable[str]) -> bool:
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
    return not is_internal_address(ip) or _listed_exactly(host, patterns)


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


def _response_socket(raw: Any, connection: Any) -> Any:
    """The socket a streamed urllib3 response reads from, or None."""
    sock = getattr(connection, "sock", None)
    if sock is not None:
        return sock
    # http.client lets go of the connection's socket when the response will close it
    # (HTTP/1.0, "Connection: close"); the response's buffered reader still holds it.
    reader = getattr(getattr(raw, "_fp", None), "fp", None)
    return getattr(getattr(reader, "raw", None), "_sock", None)
