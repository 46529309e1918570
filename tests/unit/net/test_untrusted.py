"""Text from strangers: numbers read as ASCII decimal only, controls escaped for logs."""

from __future__ import annotations

import pytest

from worker.net.untrusted import MAX_URL_CHARS, ascii_int, escape_controls, http_url


@pytest.mark.parametrize("text", ["0", "7", "1710757981609", "9" * 18])
def test_ascii_int_reads_ascii_decimal_digits(text: str) -> None:
    assert ascii_int(text) == int(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\u00b2",
        "\u0661",
        "\uff11",
        "+1",
        "-1",
        " 1",
        "1 ",
        "1_0",
        "1e3",
        "0x1",
        "1.0",
        "9" * 19,
    ],
)
def test_ascii_int_refuses_anything_but_1_to_18_ascii_decimal_digits(text: str) -> None:
    assert ascii_int(text) is None


@pytest.mark.parametrize(
    "text", ["\u00b2", "\u0661\u0662", " 12", "12 ", "+1", "-1", "", "1_000", "0x10"]
)
def test_a_number_that_is_not_plain_ascii_decimal_digits_is_not_read(text: str) -> None:
    assert ascii_int(text) is None


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("12", 12), ("007", 7)])
def test_plain_ascii_decimal_digits_are_read_as_their_number(text: str, value: int) -> None:
    assert ascii_int(text) == value


def test_a_number_too_long_to_convert_is_not_read() -> None:
    assert ascii_int("9" * 5000) is None


def test_escape_controls_escapes_c0_c1_and_del_and_keeps_the_rest() -> None:
    controls = "".join(map(chr, [*range(0x20), *range(0x7F, 0xA0)]))
    escaped = escape_controls(controls)
    assert escaped == "".join(f"\\x{ord(c):02x}" for c in controls)
    assert escape_controls("GET /caf\u00e9?a=b HTTP/1.1") == "GET /caf\u00e9?a=b HTTP/1.1"
    assert escape_controls("a\u2028b") == "a\\u2028b"  # a line break to some
    # A literal backslash is doubled, so "\\x0a" in a log line always means an escaped LF.
    assert escape_controls("a\\x0a") == "a\\\\x0a"


@pytest.mark.parametrize(
    "value", ["https://d1.cloudfront.net/out.mp4?sig=abc", "http://127.0.0.1:8080/files/x.mp4"]
)
def test_an_http_url_with_a_host_is_taken_as_it_is(value: str) -> None:
    assert http_url(value) == value


@pytest.mark.parametrize(
    "value",
    [
        None,
        42,
        "",
        "null",
        "/files/x.mp4",
        "ftp://h/x.mp4",
        "https://",
        "https://a b/x",
        "https://h/x\n",
        "https://user:pw@h/x",
        "https://[::1/x",
        "https://h/" + "x" * MAX_URL_CHARS,
    ],
)
def test_anything_else_is_no_url(value: object) -> None:
    assert http_url(value) is None
