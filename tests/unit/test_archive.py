"""Unit tests of worker.archive's pure parts: object keys, the object's user metadata, and
which sources are fetched."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.archive import S3_USER_METADATA_BYTES, archive_key, check_source, user_metadata
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


def test_a_callers_archive_key_is_put_under_the_prefix_in_place_of_the_job_id() -> None:
    assert archive_key("lipsync/", JOB_ID, "orders/7/take.mp4") == "lipsync/orders/7/take.mp4"
    assert archive_key("", JOB_ID, "x.mov") == "x.mov"
    assert archive_key("lipsync/", JOB_ID, None) == f"lipsync/{JOB_ID}.mp4"


def test_the_job_id_is_checked_even_when_the_caller_names_the_key() -> None:
    with pytest.raises(ValueError, match="not a job id"):
        archive_key("lipsync/", "../" + JOB_ID[3:], "x.mp4")


# --- user_metadata ---------------------------------------------------------------------------

AKOOL_ID = "65f1c0ffee"
OURS = {"job-id": JOB_ID, "akool-id": AKOOL_ID}
PROPERTY = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
token_chars = "!#$%&'*+.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-"
header_names = st.text(token_chars, min_size=1, max_size=40).filter(
    lambda name: name.lower() not in OURS
)
ascii_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)


def case_distinct(metadata: dict[str, str]) -> bool:
    return len({name.lower() for name in metadata}) == len(metadata)


def size(metadata: dict[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())


fitting = st.dictionaries(header_names, ascii_values, max_size=20).filter(
    lambda m: case_distinct(m) and size({**OURS, **m}) <= S3_USER_METADATA_BYTES
)


def test_without_metadata_the_object_carries_its_job_id_and_akool_id() -> None:
    assert user_metadata(JOB_ID, AKOOL_ID, None) == OURS
    assert user_metadata(JOB_ID, AKOOL_ID, {}) == OURS


def test_the_akool_id_is_made_ascii_and_short() -> None:
    sent = user_metadata(JOB_ID, "id with spaces/\u00e9" + "x" * 200, None)
    assert sent["akool-id"].isascii() and " " not in sent["akool-id"]
    assert len(sent["akool-id"]) == 128


@PROPERTY
@given(fitting)
def test_metadata_that_can_all_go_goes_whole_beside_ours(metadata: dict[str, str]) -> None:
    assert user_metadata(JOB_ID, AKOOL_ID, metadata) == {**OURS, **metadata}


@PROPERTY
@given(fitting, header_names, st.text(min_size=1, max_size=20).filter(lambda v: not v.isascii()))
def test_one_value_that_is_not_ascii_keeps_all_of_the_callers_metadata_off(
    metadata: dict[str, str], name: str, value: str
) -> None:
    assert user_metadata(JOB_ID, AKOOL_ID, {**metadata, name: value}) == OURS


@PROPERTY
@given(fitting, header_names, st.sampled_from(["\t", "\n", "\r", "\x00", "\x7f"]))
def test_one_value_with_a_control_character_keeps_all_of_it_off(
    metadata: dict[str, str], name: str, char: str
) -> None:
    assert user_metadata(JOB_ID, AKOOL_ID, {**metadata, name: f"a{char}b"}) == OURS


@PROPERTY
@given(
    fitting, st.text(min_size=1, max_size=40).filter(lambda n: any(c not in token_chars for c in n))
)
def test_one_key_that_is_not_a_header_name_keeps_all_of_it_off(
    metadata: dict[str, str], name: str
) -> None:
    assert user_metadata(JOB_ID, AKOOL_ID, {**metadata, name: "v"}) == OURS


@PROPERTY
@given(fitting.filter(bool), st.data())
def test_two_keys_equal_but_for_case_keep_all_of_it_off(
    metadata: dict[str, str], data: st.DataObject
) -> None:
    name = data.draw(st.sampled_from(sorted(metadata)), label="name")
    twin = name.swapcase()
    if twin == name:  # no letter to swap: add one to both
        name, twin = name + "a", name + "A"
    assert user_metadata(JOB_ID, AKOOL_ID, {**metadata, name: "1", twin: "2"}) == OURS


@pytest.mark.parametrize("name", ["job-id", "Job-Id", "AKOOL-ID", "akool-Id"])
def test_a_key_that_is_ours_in_any_case_keeps_all_of_it_off(name: str) -> None:
    assert user_metadata(JOB_ID, AKOOL_ID, {"order": "7", name: "forged"}) == OURS


def test_metadata_of_exactly_2_kb_with_ours_goes_and_one_byte_more_does_not() -> None:
    room = S3_USER_METADATA_BYTES - size(OURS) - len("note")
    assert S3_USER_METADATA_BYTES == 2048
    assert user_metadata(JOB_ID, AKOOL_ID, {"note": "x" * room}) == {**OURS, "note": "x" * room}
    assert user_metadata(JOB_ID, AKOOL_ID, {"note": "x" * (room + 1)}) == OURS


@PROPERTY
@given(st.dictionaries(st.text(max_size=12), st.text(max_size=300), max_size=12))
def test_any_metadata_goes_all_or_nothing_and_what_goes_is_what_s3_takes(
    metadata: dict[str, str],
) -> None:
    sent = user_metadata(JOB_ID, AKOOL_ID, metadata)
    assert sent in (OURS, {**OURS, **metadata})
    assert sent["job-id"] == JOB_ID
    assert all(k.isascii() and v.isascii() and v.isprintable() for k, v in sent.items())
    assert case_distinct(sent)
    assert size(sent) <= S3_USER_METADATA_BYTES


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
