"""Text from strangers: numbers read as ASCII decimal only, controls escaped for logs."""

from __future__ import annotations

import pytest

from worker.untrusted import ascii_int, escape_controls


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
