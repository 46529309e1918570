"""Unit tests of the archiver's SSRF guard: which addresses may be fetched, before and after
connecting. Only names that resolve on this machine (localhost) and literal IPs are used."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from worker.archive import Archiver, check_peer, check_source
from worker.errors import DownloadError, PermanentError, SourceRefusedError
from worker.netguard import peer_address

EVERYWHERE = ("*",)
JOB_ID = "0123456789abcdef0123456789abcdef"


def resolves_locally(host: str) -> bool:
    """True when `host` resolves without a DNS server (e.g. from /etc/hosts)."""
    try:
        return bool(socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM))
    except (socket.gaierror, UnicodeError):
        return False


# --- check_source ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost/video.mp4",
        "http://localhost:9000/video.mp4",
        "http://LocalHost/video.mp4",
        "http://127.0.0.1/video.mp4",
        "http://127.1/video.mp4",
        "http://2130706433/video.mp4",
        "http://0x7f000001/video.mp4",
        "http://[::1]/video.mp4",
        "http://[::ffff:127.0.0.1]/video.mp4",
        "http://0.0.0.0/video.mp4",
        "http://169.254.169.254/latest/meta-data",
        "http://[fd00:ec2::254]/latest/meta-data",
        "http://100.100.100.200/latest/meta-data",
        "https://10.1.2.3/video.mp4",
    ],
)
def test_a_url_resolving_to_an_internal_address_is_refused_even_under_star(url: str) -> None:
    with pytest.raises(SourceRefusedError, match="private or internal address") as info:
        check_source(url, EVERYWHERE)
    assert isinstance(info.value, PermanentError)
    assert info.value.url == url


def test_localhost_is_fetched_when_listed_exactly() -> None:
    check_source("http://localhost:8080/video.mp4", ["localhost"])
    check_source("http://LocalHost/video.mp4", ["*.cloudfront.net", "localhost"])


def test_a_literal_ip_is_fetched_only_when_that_ip_is_listed() -> None:
    check_source("http://127.0.0.1:8080/video.mp4", ["127.0.0.1"])
    with pytest.raises(SourceRefusedError):
        check_source("http://127.0.0.1:8080/video.mp4", ["localhost"])
    with pytest.raises(SourceRefusedError):
        check_source("http://127.0.0.2:8080/video.mp4", ["127.0.0.*"])


def test_a_public_ip_literal_matching_a_pattern_passes() -> None:
    check_source("https://93.184.216.34/video.mp4", EVERYWHERE)


def test_a_wildcard_for_localhost_subdomains_does_not_bypass_the_guard() -> None:
    if not resolves_locally("foo.localhost"):
        pytest.skip("foo.localhost does not resolve on this machine")
    with pytest.raises(SourceRefusedError, match="private or internal address"):
        check_source("http://foo.localhost/video.mp4", ["*.localhost"])


@pytest.mark.parametrize("pattern", ["*", "local*", "localhos?", "[l]ocalhost", "*host"])
def test_a_wildcard_matching_localhost_does_not_let_it_be_fetched(pattern: str) -> None:
    with pytest.raises(SourceRefusedError, match="private or internal address"):
        check_source("http://localhost/video.mp4", [pattern])


def test_a_host_outside_the_patterns_is_refused_before_any_lookup() -> None:
    with pytest.raises(SourceRefusedError, match="ARCHIVE_ALLOWED_HOSTS"):
        check_source("http://localhost/video.mp4", ["*.cloudfront.net"])


def test_a_url_with_an_invalid_port_is_refused() -> None:
    with pytest.raises(SourceRefusedError, match="cannot be parsed"):
        check_source("http://localhost:99999/video.mp4", ["localhost"])


def test_a_host_that_does_not_resolve_fails_as_a_transient_download_error() -> None:
    # `.invalid` never resolves (RFC 2606); the archiver's GET then fails to connect.
    archiver = Archiver(None, "bucket", allowed_hosts=["*.invalid"], timeout=5)
    with pytest.raises(DownloadError):
        archiver.archive(JOB_ID, "akool-1", "http://nothing.invalid/video.mp4")


# --- the peer address after connecting ------------------------------------------------------


class _Ok(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


class _KeepAlive(_Ok):
    protocol_version = "HTTP/1.1"


@pytest.fixture(params=[_Ok, _KeepAlive], ids=["connection-close", "keep-alive"])
def local_url(request: pytest.FixtureRequest) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/video.mp4"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def test_the_peer_address_of_a_streamed_response_is_known(local_url: str) -> None:
    with requests.get(local_url, stream=True, timeout=5) as response:
        assert peer_address(response) == "127.0.0.1"


def test_a_connection_that_reached_an_internal_address_is_closed_and_refused(
    local_url: str,
) -> None:
    response = requests.get(local_url, stream=True, timeout=5)
    with pytest.raises(SourceRefusedError, match="connected to a private or internal address"):
        check_peer(response, local_url, EVERYWHERE)
    assert response.raw.closed


def test_a_connection_to_an_exactly_listed_internal_host_is_kept(local_url: str) -> None:
    with requests.get(local_url, stream=True, timeout=5) as response:
        check_peer(response, local_url, ["127.0.0.1"])
        assert response.raw.read() == b"ok"


def test_a_response_without_a_socket_is_left_to_the_check_before_connecting() -> None:
    response = requests.Response()
    assert peer_address(response) is None
    check_peer(response, "http://localhost/video.mp4", EVERYWHERE)
