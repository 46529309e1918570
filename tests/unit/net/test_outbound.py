"""The notification's POST (worker/net/outbound.py) under NOTIFY_ALLOWED_HOSTS: checked before
connecting, sent to the address that was checked, https only for hosts not listed exactly.
Names are answered by a stand-in for DNS at its seam (socket.getaddrinfo), and connections
are recorded at urllib3's seam and never leave the machine."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import urllib3.util.connection

from worker.errors import NotifyFailed, NotifyRefused, PermanentError, TransientError
from worker.net.outbound import post_json

PUBLIC_IP = "93.184.216.34"
RECORD = {"id": "0123456789abcdef0123456789abcdef", "status": "archived"}


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str | OSError]]:
    """Scripted answers per name, one per lookup (the last repeats); other names and IP
    literals go to the real resolver."""
    script: dict[str, list[str | OSError]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in script:
            return real(host, port, *args, **kwargs)
        answers = script[host]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, OSError):
            raise answer
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, int(port or 0)))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return script


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every (host, port) urllib3 opens a socket to; only loopback ones are really opened."""
    opened: list[tuple[str, int]] = []
    real = urllib3.util.connection.create_connection

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        opened.append((address[0], address[1]))
        reached = {info[4][0] for info in socket.getaddrinfo(address[0], address[1])}
        if not all(ip.startswith("127.") for ip in reached):
            raise OSError("the tests connect to loopback addresses only")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", create_connection)
    return opened


class _Receiver(BaseHTTPRequestHandler):
    """Notes the Host header and JSON body of each POST and answers 200."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.server.posts.append((self.headers.get("Host"), body))  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


class Receiver:
    """A _Receiver on `ip` (and `port`, default any), in a thread."""

    def __init__(self, ip: str, port: int = 0) -> None:
        self.server = ThreadingHTTPServer((ip, port), _Receiver)
        self.server.daemon_threads = True
        self.server.posts = []  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def posts(self) -> list[tuple[str, Any]]:
        return list(self.server.posts)  # type: ignore[attr-defined]

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver("127.0.0.1") as r:
        yield r


def post(url: str, *allowed: str) -> int:
    return post_json(url, RECORD, allowed_hosts=allowed or ("*",), timeout=5)


def test_the_record_goes_to_the_checked_address_with_the_urls_host_header(
    dns: dict[str, list[str | OSError]], connections: list[tuple[str, int]]
) -> None:
    with Receiver("127.0.0.1") as checked, Receiver("127.0.0.2", checked.port) as elsewhere:
        dns["hooks.test"] = ["127.0.0.1", "127.0.0.2"]
        assert post(f"http://hooks.test:{checked.port}/hook?token=t0k", "hooks.test") == 200
        assert checked.posts == [(f"hooks.test:{checked.port}", RECORD)]
        assert elsewhere.posts == []
    assert connections == [("127.0.0.1", checked.port)]


def test_plain_http_to_a_public_host_is_refused_without_connecting(
    dns: dict[str, list[str | OSError]], connections: list[tuple[str, int]]
) -> None:
    dns["hooks.example.com"] = [PUBLIC_IP]
    with pytest.raises(NotifyRefused, match="plain http.*NOTIFY_ALLOWED_HOSTS") as caught:
        post("http://hooks.example.com/hook?token=t0k")
    assert isinstance(caught.value, PermanentError)
    assert "'hooks.example.com'" in str(caught.value)
    assert "t0k" not in str(caught.value)
    assert connections == []


def test_a_port_other_than_443_is_used_only_for_a_host_listed_exactly(
    dns: dict[str, list[str | OSError]], connections: list[tuple[str, int]]
) -> None:
    dns["hooks.example.com"] = [PUBLIC_IP]
    url = "https://hooks.example.com:8443/hook"
    with pytest.raises(NotifyRefused, match="port 8443.*NOTIFY_ALLOWED_HOSTS"):
        post(url, "*.example.com")
    assert connections == []
    # Listed exactly, it is tried, at the checked address (which the tests cannot reach).
    with pytest.raises(NotifyFailed, match="could not be reached"):
        post(url, "hooks.example.com")
    assert connections == [(PUBLIC_IP, 8443)]


def test_a_host_resolving_to_an_internal_address_under_a_wildcard_is_refused(
    dns: dict[str, list[str | OSError]], connections: list[tuple[str, int]]
) -> None:
    dns["hooks.example.com"] = ["10.0.0.5"]
    with pytest.raises(NotifyRefused, match="private or internal address.*NOTIFY_ALLOWED_HOSTS"):
        post("https://hooks.example.com/hook", "*.example.com")
    assert connections == []


def test_a_host_whose_lookup_fails_is_worth_trying_again_and_nothing_is_sent(
    dns: dict[str, list[str | OSError]], receiver: Receiver
) -> None:
    dns["hooks.test"] = [socket.gaierror(socket.EAI_AGAIN, "Temporary failure"), "127.0.0.1"]
    with pytest.raises(NotifyFailed, match="could not be resolved") as caught:
        post(f"http://hooks.test:{receiver.port}/hook", "hooks.test")
    assert isinstance(caught.value, TransientError)
    assert receiver.posts == []


@pytest.mark.parametrize(
    "url",
    ["https://evil.com\\@hooks.example.com/hook?token=t0k", "ftp://hooks.example.com/t0k", "t0k"],
)
def test_a_url_that_is_not_plain_https_is_refused_without_quoting_it(
    url: str, connections: list[tuple[str, int]]
) -> None:
    with pytest.raises(NotifyRefused) as caught:
        post(url)
    assert "t0k" not in str(caught.value)
    assert connections == []
