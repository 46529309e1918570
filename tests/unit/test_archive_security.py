"""Unit tests of the archiver's SSRF guard: which addresses may be fetched, before and after
connecting, and that the connection goes to the address that was checked. Names other than
localhost are answered by a stand-in for DNS at its seam (socket.getaddrinfo); connections
are recorded at urllib3's seam and never leave the machine. Servers run in threads on
loopback addresses, one of them over TLS with a certificate made here."""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import urllib3.util.connection
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from worker.archive import Archiver, check_peer, check_source
from worker.errors import DownloadError, PermanentError, SourceRefusedError, TransientError
from worker.net.guard import peer_address

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


# --- connecting to the address that was checked ---------------------------------------------


class Dns:
    """Stands in for DNS at its seam: each lookup of a scripted name takes the next answer
    (an address, or an OSError to raise), the last one repeating. IP literals and names not
    scripted go to the real resolver."""

    def __init__(self, real: Any) -> None:
        self._real = real
        self._answers: dict[str, list[str | OSError]] = {}
        self.lookups: list[str] = []

    def script(self, name: str, *answers: str | OSError) -> None:
        self._answers[name] = list(answers)

    def __call__(self, host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in self._answers:
            return self._real(host, port, *args, **kwargs)
        self.lookups.append(name)
        answers = self._answers[name]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, OSError):
            raise answer
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer, int(port or 0)))]


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> Dns:
    fake = Dns(socket.getaddrinfo)
    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return fake


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every (host, port) urllib3 opens a socket to; anything but loopback is refused."""
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


class MemoryS3:
    """The S3 client the archiver is given: keeps what upload_fileobj reads."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def upload_fileobj(self, fileobj: Any, bucket: str, key: str, **_: Any) -> None:
        chunks = []
        while chunk := fileobj.read(1024 * 1024):
            chunks.append(chunk)
        self.objects[key] = b"".join(chunks)


class _Site(BaseHTTPRequestHandler):
    """/ok (two bytes), /squared (Content-Length "\u00b2"), /redirect?to=URL; notes each Host."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.hosts.append(self.headers.get("Host"))  # type: ignore[attr-defined]
        parts = urlsplit(self.path)
        if parts.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", parse_qs(parts.query)["to"][0])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", "\u00b2" if parts.path == "/squared" else "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""


class Site:
    """A _Site server on `ip` (and `port`, default any), in a thread; over TLS if given a
    context. `hosts` lists the Host header of each request, `names` the SNI names."""

    def __init__(self, ip: str, port: int = 0, tls: ssl.SSLContext | None = None) -> None:
        self.server = ThreadingHTTPServer((ip, port), _Site)
        self.server.daemon_threads = True
        self.server.hosts = []  # type: ignore[attr-defined]
        self.names: list[str | None] = []
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _context: self.names.append(name)
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def hosts(self) -> list[str]:
        return list(self.server.hosts)  # type: ignore[attr-defined]

    def __enter__(self) -> Site:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def archiver(allowed: list[str], **options: Any) -> Archiver:
    return Archiver(MemoryS3(), "bucket", allowed_hosts=allowed, timeout=5, **options)


def test_a_host_is_connected_at_the_address_its_lookup_answered_even_if_a_later_one_differs(
    dns: Dns, connections: list[tuple[str, int]]
) -> None:
    with Site("127.0.0.1") as checked, Site("127.0.0.2", checked.port) as elsewhere:
        dns.script("files.test", "127.0.0.1", "127.0.0.2")
        url = f"http://files.test:{checked.port}/ok"
        result = archiver(["files.test"]).archive(JOB_ID, "a1", url)
        assert result.size == 2
        assert checked.hosts == [f"files.test:{checked.port}"]  # the Host header is the name
        assert elsewhere.hosts == []
    assert dns.lookups == ["files.test"]
    assert connections == [("127.0.0.1", checked.port)]


def test_a_host_whose_lookup_fails_is_a_transient_download_error_and_nothing_is_sent(
    dns: Dns, connections: list[tuple[str, int]]
) -> None:
    with Site("127.0.0.1") as site:
        failure = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        dns.script("files.test", failure, "127.0.0.1")
        with pytest.raises(DownloadError, match="could not resolve") as info:
            archiver(["files.test"]).archive(JOB_ID, "a1", f"http://files.test:{site.port}/ok")
        assert isinstance(info.value, TransientError)
        assert site.hosts == []
    assert connections == []


def test_plain_http_to_a_host_not_listed_exactly_is_refused_without_connecting(
    dns: Dns, connections: list[tuple[str, int]]
) -> None:
    dns.script("files.example.com", "93.184.216.34")
    with pytest.raises(SourceRefusedError, match="https.*listed exactly in ARCHIVE_ALLOWED_HOSTS"):
        archiver(["*.example.com"]).archive(JOB_ID, "a1", "http://files.example.com/v.mp4")
    assert connections == []


def test_a_proxy_from_the_environment_is_never_used(
    monkeypatch: pytest.MonkeyPatch, connections: list[tuple[str, int]]
) -> None:
    # Through a proxy, the proxy would resolve the name again: the checked address would
    # mean nothing. Nothing listens on port 9, so a proxied GET would fail.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with Site("127.0.0.1") as site:
        url = f"http://127.0.0.1:{site.port}/ok"
        assert archiver(["127.0.0.1"]).archive(JOB_ID, "a1", url).size == 2
    assert connections == [("127.0.0.1", site.port)]


def test_a_port_other_than_443_is_refused_unless_the_host_is_listed_exactly(dns: Dns) -> None:
    dns.script("files.example.com", "93.184.216.34")
    url = "https://files.example.com:8443/v.mp4"
    with pytest.raises(SourceRefusedError, match="port 8443.*ARCHIVE_ALLOWED_HOSTS") as info:
        check_source(url, ["*.example.com"])
    assert isinstance(info.value, PermanentError)
    assert check_source(url, ["files.example.com"]) == "93.184.216.34"
    assert check_source("https://files.example.com:443/v.mp4", ["*.example.com"]) == "93.184.216.34"


def test_a_content_length_of_unicode_digits_is_treated_as_unknown(
    connections: list[tuple[str, int]],
) -> None:
    progress: list[tuple[int, int | None]] = []
    with Site("127.0.0.1") as site:
        url = f"http://127.0.0.1:{site.port}/squared"
        result = archiver(["127.0.0.1"]).archive(
            JOB_ID, "a1", url, on_progress=lambda done, total: progress.append((done, total))
        )
        assert (result.size, progress) == (2, [(2, None)])
        # Unknown, not trusted: the size limit still holds while streaming.
        with pytest.raises(SourceRefusedError, match="ARCHIVE_MAX_BYTES"):
            archiver(["127.0.0.1"], max_bytes=1).archive(JOB_ID, "a1", url)


# --- https on a pinned connection -----------------------------------------------------------


def certificate(directory: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for the DNS name `name`, and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def tls_site(directory: Path, name: str) -> tuple[Site, Path]:
    """A Site on 127.0.0.1 over TLS with a certificate for `name`, and that certificate."""
    cert_path, key_path = certificate(directory, name)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return Site("127.0.0.1", tls=context), cert_path


def trusting(cert_path: Path) -> requests.Session:
    session = requests.Session()
    session.verify = str(cert_path)
    return session


def test_an_https_result_is_fetched_from_the_checked_address_with_tls_proving_the_name(
    tmp_path: Path, dns: Dns, connections: list[tuple[str, int]]
) -> None:
    site, cert_path = tls_site(tmp_path, "files.test")
    with site:
        dns.script("files.test", "127.0.0.1", "127.0.0.2")
        fetcher = archiver(["files.test"], session=trusting(cert_path))
        result = fetcher.archive(JOB_ID, "a1", f"https://files.test:{site.port}/ok")
        assert result.size == 2
        assert site.names == ["files.test"]  # SNI names the host, not the IP
        assert site.hosts == [f"files.test:{site.port}"]
    assert connections == [("127.0.0.1", site.port)]


def test_a_certificate_for_another_name_fails_on_the_pinned_connection(
    tmp_path: Path, dns: Dns, connections: list[tuple[str, int]]
) -> None:
    site, cert_path = tls_site(tmp_path, "other.test")
    with site:
        dns.script("files.test", "127.0.0.1")
        fetcher = archiver(["files.test"], session=trusting(cert_path))
        with pytest.raises(DownloadError):
            fetcher.archive(JOB_ID, "a1", f"https://files.test:{site.port}/ok")
        assert site.hosts == []


def test_an_https_to_http_redirect_is_refused_even_to_a_host_listed_exactly(
    tmp_path: Path, dns: Dns, connections: list[tuple[str, int]]
) -> None:
    site, cert_path = tls_site(tmp_path, "files.test")
    with site, Site("127.0.0.1") as plain:
        dns.script("files.test", "127.0.0.1")
        downgrade = f"http://files.test:{plain.port}/ok"
        fetcher = archiver(["files.test"], session=trusting(cert_path))
        with pytest.raises(SourceRefusedError, match="leaves https") as info:
            fetcher.archive(JOB_ID, "a1", f"https://files.test:{site.port}/redirect?to={downgrade}")
        assert "ARCHIVE_ALLOWED_HOSTS" in str(info.value)
        assert plain.hosts == []
