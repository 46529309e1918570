"""Unit tests of worker.archive's pure parts: object keys and which sources are fetched."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import requests

from worker.archive import archive_key, check_source
from worker.errors import PermanentError, SourceRefusedError, TransientError
from worker.net.guard import host_allowed
from worker.store.jobs import new_job_id

JOB_ID = "0123456789abcdef0123456789abcdef"
CDN = ("*.cloudfront.net",)


# --- archive_key -----------------------------------------------------------------------------


def test_the_key_is_the_prefix_the_job_id_and_mp4() -> None:
    assert archive_key("lipsync/", JOB_ID) == f"lipsync/{JOB_ID}.mp4"
    assert archive_key("", JOB_ID) == f"{JOB_ID}.mp4"


def test_a_fresh_job_id_makes_a_valid_key() -> None:
    job_id = new_job_id()
    assert archive_key("p/", job_id) == f"p/{job_id}.mp4"


@pytest.mark.parametrize(
    "job_id",
    [
        "",
        "../x",
        "a/b",
        JOB_ID.upper(),
        JOB_ID[:-1],
        JOB_ID + "0",
        "../" + JOB_ID[3:],
        JOB_ID[:16] + "/" + JOB_ID[17:],
        JOB_ID[:-1] + "g",
        " " + JOB_ID[1:],
    ],
)
def test_anything_but_a_32_hex_job_id_is_refused(job_id: str) -> None:
    with pytest.raises(ValueError, match="not a job id"):
        archive_key("lipsync/", job_id)


def test_a_job_id_with_a_trailing_newline_is_refused() -> None:
    with pytest.raises(ValueError):
        archive_key("lipsync/", JOB_ID + "\n")


# --- host_allowed ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host", ["d1.cloudfront.net", "D1.CloudFront.NET", "a.b.cloudfront.net", "d1.cloudfront.net."]
)
def test_a_wildcard_matches_subdomains(host: str) -> None:
    assert host_allowed(host, CDN)


@pytest.mark.parametrize(
    "host",
    [
        "cloudfront.net.evil.com",
        "evilcloudfront.net",
        "cloudfront.net",
        "d1.cloudfront.net.evil.com",
        "d1.cloudfront.network",
        "",
    ],
)
def test_a_wildcard_matches_nothing_else(host: str) -> None:
    assert not host_allowed(host, CDN)


def test_an_exact_host_matches_only_itself() -> None:
    assert host_allowed("files.example.com", ["files.example.com"])
    assert not host_allowed("x.files.example.com", ["files.example.com"])
    assert not host_allowed("files.example.com.evil", ["files.example.com"])


def test_any_of_several_patterns_may_match() -> None:
    patterns = ["*.cloudfront.net", "*.akool.com"]
    assert host_allowed("cdn.akool.com", patterns)
    assert host_allowed("d2.cloudfront.net", patterns)
    assert not host_allowed("akool.com.evil.org", patterns)


def test_no_patterns_allow_nothing() -> None:
    assert not host_allowed("d1.cloudfront.net", [])


# --- check_source ----------------------------------------------------------------------------


PUBLIC_IP = "93.184.216.34"


@pytest.fixture
def cdn_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS at its seam: d1.cloudfront.net answers a public address (no DNS in the tests)."""
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        if host.lower().rstrip(".") == "d1.cloudfront.net":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC_IP, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.mark.parametrize(
    "url",
    [
        "https://d1.cloudfront.net/out/video.mp4",
        "https://d1.cloudfront.net:443/video.mp4?sig=abc",
        "HTTPS://D1.CLOUDFRONT.NET/v.mp4",
    ],
)
def test_an_https_url_on_an_allowed_host_passes_and_gives_the_address_to_connect_to(
    cdn_dns: None, url: str
) -> None:
    assert check_source(url, CDN) == PUBLIC_IP


@pytest.mark.parametrize(
    ("url", "rule"),
    [
        ("http://d1.cloudfront.net/video.mp4", "plain http"),
        ("http://d1.cloudfront.net:8080/video.mp4?sig=abc", "plain http"),
        ("https://d1.cloudfront.net:8443/video.mp4", "port 8443"),
    ],
)
def test_plain_http_or_another_port_under_a_wildcard_is_refused_naming_the_rule(
    cdn_dns: None, url: str, rule: str
) -> None:
    with pytest.raises(SourceRefusedError, match=rule) as info:
        check_source(url, CDN)
    assert "listed exactly in ARCHIVE_ALLOWED_HOSTS" in str(info.value)
    assert isinstance(info.value, PermanentError)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://d1.cloudfront.net/video.mp4",
        "file:///etc/passwd",
        "file://d1.cloudfront.net/etc/passwd",
        "gopher://d1.cloudfront.net/",
        "https:///video.mp4",
        "https://",
        "/video.mp4",
        "d1.cloudfront.net/video.mp4",
        "",
    ],
)
def test_a_non_http_url_or_one_without_a_host_is_refused(url: str) -> None:
    with pytest.raises(SourceRefusedError) as info:
        check_source(url, CDN)
    assert info.value.url == url


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.com/video.mp4",
        "https://cloudfront.net.evil.com/video.mp4",
        "https://evilcloudfront.net/video.mp4",
        "https://d1.cloudfront.net@evil.com/video.mp4",
        "http://127.0.0.1/video.mp4",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_a_url_on_a_host_not_allowed_is_refused_naming_the_setting(url: str) -> None:
    with pytest.raises(SourceRefusedError) as info:
        check_source(url, CDN)
    assert "ARCHIVE_ALLOWED_HOSTS" in str(info.value)


def test_a_refused_source_is_permanent() -> None:
    with pytest.raises(PermanentError) as info:
        check_source("ftp://d1.cloudfront.net/v.mp4", CDN)
    assert isinstance(info.value, SourceRefusedError)
    assert not isinstance(info.value, TransientError)


def test_a_backslash_cannot_smuggle_a_disallowed_host_past_the_check() -> None:
    url = "https://evil.com\\@d1.cloudfront.net/v.mp4"
    fetched = requests.Request("GET", url).prepare().url or ""
    assert fetched.startswith("https://evil.com/")  # where requests would really connect
    with pytest.raises(SourceRefusedError):
        check_source(url, CDN)
