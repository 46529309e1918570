"""Tests of how Akool's answers are typed: business codes, envelopes and poll statuses."""

from __future__ import annotations

import json

import pytest

from worker.akool.client import (
    AUTH_CODES,
    PERMANENT_CODES,
    TRANSIENT_CODES,
    AkoolStatus,
    error_for_code,
    parse_envelope,
    parse_status,
)
from worker.errors import (
    AkoolAuthError,
    AkoolBusy,
    AkoolDoneWithoutUrl,
    AkoolError,
    AkoolPermanentError,
    AkoolTransientError,
    PermanentError,
    TransientError,
)

URL = "https://openapi.akool.com/api/open/v3/content/video/lipsync"

# The business codes as Akool's API documentation lists them.
DOC_TRANSIENT = (1005, 1015, 1201, 1205)
DOC_AUTH = (1101, 1102)
DOC_PERMANENT = (
    1003,
    1004,
    1006,
    1008,
    1009,
    1103,
    1104,
    1200,
    1202,
    1203,
    1204,
    1207,
    1208,
    1209,
    1210,
    1211,
    1213,
    1221,
)


def envelope(payload: object) -> bytes:
    return json.dumps(payload).encode()


# --- business codes --------------------------------------------------------------------------


def test_the_code_tables_cover_exactly_the_documented_codes() -> None:
    assert set(TRANSIENT_CODES) == set(DOC_TRANSIENT)
    assert set(AUTH_CODES) == set(DOC_AUTH)
    assert set(PERMANENT_CODES) == set(DOC_PERMANENT)


@pytest.mark.parametrize("code", DOC_TRANSIENT)
def test_a_try_again_later_code_is_transient_and_names_the_code(code: int) -> None:
    error = error_for_code(code, "whatever", url=URL)
    # "Too frequent" is Akool's rate limiter: a refusal before any work (AkoolBusy).
    assert type(error) is (AkoolBusy if code == 1005 else AkoolTransientError)
    assert isinstance(error, TransientError)
    assert not isinstance(error, PermanentError)
    assert error.code == code
    assert error.url == URL
    assert str(code) in str(error)


@pytest.mark.parametrize("code", DOC_AUTH)
def test_a_credentials_code_is_a_permanent_auth_error_naming_the_code(code: int) -> None:
    error = error_for_code(code, "Invalid authorization", url=URL)
    assert type(error) is AkoolAuthError
    assert isinstance(error, AkoolPermanentError)
    assert isinstance(error, PermanentError)
    assert error.code == code
    assert str(code) in str(error)


@pytest.mark.parametrize("code", DOC_PERMANENT)
def test_an_input_or_account_code_is_permanent_and_names_the_code(code: int) -> None:
    error = error_for_code(code, "whatever", url=URL)
    assert type(error) is AkoolPermanentError
    assert isinstance(error, PermanentError)
    assert not isinstance(error, TransientError)
    assert error.code == code
    assert str(code) in str(error)


@pytest.mark.parametrize("code", [0, 999, 1001, 1099, 1206, 9999, -5])
def test_an_unknown_code_is_permanent_and_names_the_code_and_message(code: int) -> None:
    error = error_for_code(code, "something odd happened", url=URL)
    assert type(error) is AkoolPermanentError
    assert error.code == code
    assert str(code) in str(error)
    assert "something odd happened" in str(error)


def test_an_unknown_code_without_a_message_says_so() -> None:
    assert "no message" in str(error_for_code(4242, ""))


def test_a_long_vendor_message_is_shortened() -> None:
    error = error_for_code(4242, "x" * 10_000)
    assert len(str(error)) < 400


# --- envelopes -------------------------------------------------------------------------------


def test_a_success_envelope_is_returned_as_is() -> None:
    payload = {"code": 1000, "msg": "OK", "data": {"_id": "abc"}}
    assert parse_envelope(200, envelope(payload), URL) == payload


def test_an_error_envelope_is_returned_for_the_caller_to_type() -> None:
    assert parse_envelope(200, envelope({"code": 1005, "msg": "slow down"}), URL)["code"] == 1005


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 599])
def test_http_429_and_5xx_are_transient_whatever_the_body(status: int) -> None:
    body = envelope({"code": 1003, "msg": "Parameter error"})
    with pytest.raises(AkoolTransientError) as info:
        parse_envelope(status, body, URL)
    assert isinstance(info.value, AkoolBusy) is (status == 429)
    assert info.value.status == status
    assert info.value.url == URL
    assert str(status) in str(info.value)


@pytest.mark.parametrize(
    "body", [b"<html><body>Bad gateway</body></html>", b"", b"\xff\xfe\x00garbage", b"{"]
)
def test_a_body_that_is_not_json_is_transient(body: bytes) -> None:
    with pytest.raises(AkoolTransientError) as info:
        parse_envelope(200, body, URL)
    assert info.value.status == 200


def test_a_deeply_nested_body_is_transient_not_a_recursion_error() -> None:
    with pytest.raises(AkoolTransientError):
        parse_envelope(200, b"[" * 100_000 + b"]" * 100_000, URL)


@pytest.mark.parametrize(
    "payload",
    [
        {"msg": "OK"},
        {"code": "1000"},
        {"code": 1000.0},
        {"code": None},
        {"code": [1000]},
        [1000],
        "1000",
        1000,
        None,
    ],
)
def test_json_without_an_int_code_is_transient_on_2xx(payload: object) -> None:
    with pytest.raises(AkoolTransientError) as info:
        parse_envelope(200, envelope(payload), URL)
    assert info.value.status == 200


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
@pytest.mark.parametrize("payload", [{"msg": "nope"}, {"code": "1003"}, ["x"], None])
def test_json_without_an_int_code_is_permanent_on_4xx(status: int, payload: object) -> None:
    with pytest.raises(AkoolPermanentError) as info:
        parse_envelope(status, envelope(payload), URL)
    assert info.value.status == status
    assert not isinstance(info.value, TransientError)


@pytest.mark.parametrize("code", [True, False])
def test_a_boolean_code_is_not_taken_for_a_number(code: bool) -> None:
    with pytest.raises(AkoolTransientError):
        parse_envelope(200, envelope({"code": code}), URL)
    with pytest.raises(AkoolPermanentError):
        parse_envelope(400, envelope({"code": code}), URL)


def test_a_4xx_with_a_business_code_is_returned_for_the_caller_to_type() -> None:
    assert parse_envelope(401, envelope({"code": 1101, "msg": "bad"}), URL)["code"] == 1101


# --- poll statuses ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [1, 2, 4])
def test_a_status_without_a_result_is_accepted(status: int) -> None:
    result = parse_status("job1", {"video_status": status, "video": ""}, URL)
    assert result == AkoolStatus("job1", status, None)
    assert result.done is False
    assert result.failed is (status == 4)


def test_a_completed_status_carries_its_video_url() -> None:
    video = "https://d1.cloudfront.net/out.mp4"
    result = parse_status("job1", {"video_status": 3, "video": video}, URL)
    assert result == AkoolStatus("job1", 3, video)
    assert result.done is True
    assert result.failed is False


@pytest.mark.parametrize(("raw", "expected"), [("1", 1), ("2", 2), ("4", 4)])
def test_a_status_given_as_a_digit_string_is_accepted(raw: str, expected: int) -> None:
    assert parse_status("job1", {"video_status": raw}, URL).status == expected


def test_a_completed_status_given_as_a_string_is_accepted() -> None:
    result = parse_status("job1", {"video_status": "3", "video": "https://x/y.mp4"}, URL)
    assert result.status == 3
    assert result.video_url == "https://x/y.mp4"


@pytest.mark.parametrize(
    "video",
    [None, "", "   ", 42, ["https://x/y.mp4"], "null", "/files/x.mp4", "ftp://h/x.mp4", "https://"],
)
def test_completed_without_a_usable_video_url_is_asked_again(video: object) -> None:
    data = {"video_status": 3} if video is None else {"video_status": 3, "video": video}
    with pytest.raises(AkoolDoneWithoutUrl) as info:
        parse_status("job1", data, URL)
    assert isinstance(info.value, AkoolTransientError)
    assert info.value.url == URL
    assert "null" not in str(info.value)  # the text came from the network: only its type


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        "3",
        3,
        {},
        {"video_status": None},
        {"video_status": 0},
        {"video_status": 5},
        {"video_status": -1},
        {"video_status": 2.0},
        {"video_status": True},
        {"video_status": "two"},
        {"video_status": " 2"},
        {"video_status": "-1"},
        {"video_status": "7"},
        {"video_status": [2]},
        {"video_status": {"x": 1}},
    ],
)
def test_a_junk_status_answer_is_transient(data: object) -> None:
    with pytest.raises(AkoolTransientError):
        parse_status("job1", data, URL)


def test_a_junk_status_message_is_kept_short() -> None:
    with pytest.raises(AkoolTransientError) as info:
        parse_status("job1", {"video_status": "z" * 10_000}, URL)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize("raw", ["²", "9" * 5000])
def test_a_digit_string_int_cannot_read_is_transient(raw: str) -> None:
    with pytest.raises(AkoolError):
        parse_status("job1", {"video_status": raw}, URL)
