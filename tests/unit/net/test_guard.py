"""The address rules of worker/net/guard.py: what a fetch may reach."""

from __future__ import annotations

import pytest
import requests

from worker.net.guard import (
    PinnedAdapter,
    address_allowed,
    host_header,
    is_internal_address,
)

EVERYWHERE = ("*",)

INTERNAL = [
    "127.0.0.1",
    "127.1.2.3",
    "::1",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.1.1",
    "100.100.100.200",
    "100.64.0.1",
    "fd00:ec2::254",
    "fc00::1",
    "fe80::1",
    "fe80::1%eth0",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "64:ff9b::7f00:1",
    "2002:7f00:1::1",
    "0.0.0.0",
    "::",
    "224.0.0.1",
    "239.255.255.250",
    "ff02::1",
    "240.0.0.1",
    "255.255.255.255",
    "not-an-ip",
    "",
]
PUBLIC = [
    "93.184.216.34",
    "8.8.8.8",
    "2606:4700:4700::1111",
    "::ffff:93.184.216.34",
    "64:ff9b::5db8:d822",  # NAT64 form of 93.184.216.34
]


# --- address_allowed -------------------------------------------------------------------------


@pytest.mark.parametrize("ip", INTERNAL)
def test_an_internal_address_is_refused_under_a_wildcard(ip: str) -> None:
    assert is_internal_address(ip)
    assert not address_allowed("files.example.com", ip, EVERYWHERE)
    assert not address_allowed("files.example.com", ip, ["*.example.com"])


@pytest.mark.parametrize("ip", PUBLIC)
def test_a_public_address_is_allowed_when_a_pattern_matches_the_host(ip: str) -> None:
    assert not is_internal_address(ip)
    assert address_allowed("files.example.com", ip, ["*.example.com"])
    assert address_allowed("files.example.com", ip, EVERYWHERE)


def test_a_public_address_is_refused_when_no_pattern_matches_the_host() -> None:
    assert not address_allowed("evil.com", "93.184.216.34", ["*.example.com"])


@pytest.mark.parametrize("ip", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_an_internal_address_is_allowed_when_the_host_is_listed_exactly(ip: str) -> None:
    assert address_allowed("localhost", ip, ["localhost"])
    assert address_allowed("LocalHost.", ip, ["*.cloudfront.net", "LOCALHOST"])


@pytest.mark.parametrize("pattern", ["*", "*.localhost", "local*", "localhos?", "[l]ocalhost"])
def test_a_wildcard_pattern_never_lets_a_host_reach_an_internal_address(pattern: str) -> None:
    assert not address_allowed("foo.localhost" if "." in pattern else "localhost", "::1", [pattern])
    assert not address_allowed("localhost", "127.0.0.1", [pattern])


def test_a_listed_ip_literal_allows_exactly_that_literal() -> None:
    assert address_allowed("127.0.0.1", "127.0.0.1", ["127.0.0.1"])
    assert not address_allowed("127.0.0.2", "127.0.0.2", ["127.0.0.1"])
    assert not address_allowed("127.0.0.2", "127.0.0.2", ["127.0.0.*"])


def test_listing_one_internal_host_does_not_allow_another() -> None:
    assert not address_allowed("metadata.internal", "169.254.169.254", ["localhost", "*"])


# --- ranges ipaddress calls global -----------------------------------------------------------


@pytest.mark.parametrize(
    "ip",
    [
        "fec0::1",  # site-local (deprecated, still routed inside some networks)
        "feff:ffff::1",
        "2001:db8::1",  # documentation
        "3fff::1",
        "3fff:fff:ffff::1",
        "192.0.2.1",
        "198.51.100.7",
        "203.0.113.200",
        "::ffff:203.0.113.200",
    ],
)
def test_site_local_and_documentation_addresses_are_internal(ip: str) -> None:
    assert is_internal_address(ip)
    assert not address_allowed("files.example.com", ip, EVERYWHERE)


@pytest.mark.parametrize("ip", ["3fff:1000::1", "2001:db9::1"])
def test_addresses_just_outside_those_ranges_stay_public(ip: str) -> None:
    assert not is_internal_address(ip)


# --- PinnedAdapter ---------------------------------------------------------------------------


def prepared(url: str) -> requests.PreparedRequest:
    return requests.Request("GET", url).prepare()


def test_a_pinned_https_request_connects_to_the_checked_ip_and_proves_the_host_name() -> None:
    adapter = PinnedAdapter()
    request = prepared("https://files.example.com/v.mp4")
    adapter.pin(request, "93.184.216.34")
    pool = adapter.get_connection_with_tls_context(request, True)
    assert (pool.scheme, pool.host, pool.port) == ("https", "93.184.216.34", 443)
    # SNI and the certificate check use the name, not the IP the socket goes to.
    assert pool.conn_kw["server_hostname"] == "files.example.com"
    assert pool.assert_hostname == "files.example.com"  # type: ignore[attr-defined]


def test_a_pinned_http_request_keeps_its_port_and_names_its_host_in_the_header() -> None:
    adapter = PinnedAdapter()
    request = prepared("http://files.example.com:8080/v.mp4")
    adapter.pin(request, "127.0.0.1")
    pool = adapter.get_connection_with_tls_context(request, True)
    assert (pool.scheme, pool.host, pool.port) == ("http", "127.0.0.1", 8080)
    assert host_header(request.url or "") == "files.example.com:8080"


def test_a_trailing_dot_is_not_part_of_the_name_tls_checks() -> None:
    adapter = PinnedAdapter()
    request = prepared("https://files.example.com./v.mp4")
    adapter.pin(request, "93.184.216.34")
    pool = adapter.get_connection_with_tls_context(request, True)
    assert pool.assert_hostname == "files.example.com"  # type: ignore[attr-defined]


def test_a_request_that_was_not_pinned_is_never_sent() -> None:
    with pytest.raises(RuntimeError, match="not checked"):
        PinnedAdapter().send(prepared("https://files.example.com/v.mp4"))


@pytest.mark.parametrize(
    ("url", "header"),
    [
        ("https://files.example.com/v.mp4", "files.example.com"),
        ("https://files.example.com:443/v.mp4", "files.example.com"),
        ("https://files.example.com:8443/v.mp4", "files.example.com:8443"),
        ("http://user:pw@files.example.com:80/v.mp4", "files.example.com"),
        ("http://[::1]:8080/v.mp4", "[::1]:8080"),
    ],
)
def test_the_host_header_is_the_urls_host_and_any_port_that_is_not_the_default(
    url: str, header: str
) -> None:
    assert host_header(url) == header
