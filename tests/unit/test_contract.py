"""Tests of worker.contract: each validator accepts exactly what it documents and refuses the
rest with a ValueError naming the argument and the limit; a request's digest is equal for
equal requests and differs for any other; the checked requests and the records made of them.
All pure: nothing here needs Redis or Celery."""

from __future__ import annotations

import re
import types
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker import contract
from worker.config import AKOOL_FILE_LIFETIME_SECONDS
from worker.contract import (
    MAX_AKOOL_ID_CHARS,
    MAX_ARCHIVE_KEY_BYTES,
    MAX_IDEMPOTENCY_KEY_CHARS,
    MAX_METADATA_KEY_CHARS,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_CHARS,
    MAX_URL_CHARS,
    adopted_job,
    adoption_request,
    check_akool_id,
    check_archive_key,
    check_idempotency_key,
    check_metadata,
    check_url,
    lipsync_request,
    queued_job,
)
from worker.status import JobStatus

PROPERTY = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
VIDEO = "https://videos.example.com/in.mp4"
AUDIO = "https://videos.example.com/voice.wav"
JOB_ID = "0123456789abcdef0123456789abcdef"
SIGNATURE = {"task": "app.done", "args": [], "kwargs": {}}

# Any character but a control character (and a lone surrogate, which is no character).
plain = st.characters(exclude_categories=("Cc", "Cs"))
control = st.characters(categories=("Cc",))
not_a_string = st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.text(max_size=3)))


def refused(call: Any, *words: str) -> str:
    """The message of the ValueError `call()` raises, checked to name every one of `words`."""
    with pytest.raises(ValueError) as caught:
        call()
    message = str(caught.value)
    for word in words:
        assert word in message, (word, message)
    return message


def inserted(data: st.DataObject, text: str, extra: str) -> str:
    """`text` with `extra` put in at a position drawn from `data`."""
    at = data.draw(st.integers(0, len(text)), label="at")
    return text[:at] + extra + text[at:]


# --- check_idempotency_key -------------------------------------------------------------------


@PROPERTY
@given(st.text(plain, min_size=1, max_size=MAX_IDEMPOTENCY_KEY_CHARS))
def test_any_1_to_255_characters_without_a_control_character_are_an_idempotency_key(
    key: str,
) -> None:
    assert check_idempotency_key(key) == key


@PROPERTY
@given(st.text(plain, max_size=MAX_IDEMPOTENCY_KEY_CHARS - 1), control, st.data())
def test_an_idempotency_key_with_a_control_character_is_refused_naming_it(
    text: str, char: str, data: st.DataObject
) -> None:
    refused(lambda: check_idempotency_key(inserted(data, text, char)), "idempotency_key")


@PROPERTY
@given(st.text(plain, min_size=1, max_size=40), st.integers(MAX_IDEMPOTENCY_KEY_CHARS + 1, 2000))
def test_an_idempotency_key_over_255_characters_is_refused_naming_the_limit(
    text: str, length: int
) -> None:
    key = (text * length)[:length]
    refused(lambda: check_idempotency_key(key), "idempotency_key", "255", str(length))


def test_the_idempotency_key_limits_are_255_characters_counted_as_characters() -> None:
    assert MAX_IDEMPOTENCY_KEY_CHARS == 255
    assert check_idempotency_key("k" * 255) == "k" * 255
    assert check_idempotency_key("\U0001f600" * 255) == "\U0001f600" * 255  # 1,020 bytes
    assert check_idempotency_key(" spaces and\u00a0Unicode\u2028are fine ")
    refused(lambda: check_idempotency_key("k" * 256), "idempotency_key", "255", "256")
    refused(lambda: check_idempotency_key(""), "idempotency_key", "255")


@PROPERTY
@given(not_a_string)
def test_an_idempotency_key_that_is_not_a_string_is_refused_naming_it(key: object) -> None:
    refused(lambda: check_idempotency_key(key), "idempotency_key", "string")


# --- check_metadata --------------------------------------------------------------------------

metadata_keys = st.text(min_size=1, max_size=MAX_METADATA_KEY_CHARS)
metadata_values = st.text(max_size=MAX_METADATA_VALUE_CHARS)
metadata = st.dictionaries(metadata_keys, metadata_values, max_size=MAX_METADATA_KEYS)


@PROPERTY
@given(metadata)
def test_metadata_within_the_limits_is_accepted_and_returned_equal_as_a_copy(
    given_metadata: dict[str, str],
) -> None:
    checked = check_metadata(given_metadata)
    assert checked == given_metadata
    assert checked is not given_metadata
    assert list(checked) == list(given_metadata)


def test_metadata_at_every_limit_is_accepted_and_any_mapping_is_copied_into_a_dict() -> None:
    widest = {f"{i:0{MAX_METADATA_KEY_CHARS}d}": "v" * MAX_METADATA_VALUE_CHARS for i in range(50)}
    assert (MAX_METADATA_KEYS, MAX_METADATA_KEY_CHARS, MAX_METADATA_VALUE_CHARS) == (50, 40, 500)
    assert check_metadata(widest) == widest
    assert check_metadata({"empty": ""}) == {"empty": ""}
    assert check_metadata({}) == {}
    proxy = types.MappingProxyType({"a": "b"})
    assert type(check_metadata(proxy)) is dict
    assert check_metadata(proxy) == {"a": "b"}


@PROPERTY
@given(metadata, st.integers(MAX_METADATA_KEYS + 1, 200))
def test_metadata_over_50_keys_is_refused_naming_the_limit(
    given_metadata: dict[str, str], count: int
) -> None:
    too_many = {**given_metadata, **{f"extra-{i}": "" for i in range(count)}}
    refused(lambda: check_metadata(too_many), "metadata", "50", str(len(too_many)))


@PROPERTY
@given(metadata, st.text(min_size=MAX_METADATA_KEY_CHARS + 1, max_size=200))
def test_a_metadata_key_over_40_characters_is_refused_naming_the_limit(
    given_metadata: dict[str, str], long_key: str
) -> None:
    given_metadata = dict(list(given_metadata.items())[: MAX_METADATA_KEYS - 1])
    given_metadata[long_key] = "v"
    refused(lambda: check_metadata(given_metadata), "metadata", "40")


def test_an_empty_metadata_key_is_refused_naming_the_limit() -> None:
    refused(lambda: check_metadata({"": "v"}), "metadata", "40")


@PROPERTY
@given(metadata, metadata_keys, st.text(min_size=MAX_METADATA_VALUE_CHARS + 1, max_size=900))
def test_a_metadata_value_over_500_characters_is_refused_naming_the_limit(
    given_metadata: dict[str, str], key: str, long_value: str
) -> None:
    given_metadata = dict(list(given_metadata.items())[: MAX_METADATA_KEYS - 1])
    given_metadata[key] = long_value
    refused(lambda: check_metadata(given_metadata), "metadata", "500", str(len(long_value)))


@PROPERTY
@given(metadata, st.data())
def test_a_metadata_key_or_value_that_is_not_a_string_is_refused_naming_it(
    given_metadata: dict[str, str], data: st.DataObject
) -> None:
    given_metadata = dict(list(given_metadata.items())[: MAX_METADATA_KEYS - 1])
    odd = data.draw(st.one_of(st.none(), st.integers(), st.binary(max_size=3)), label="odd")
    mixed: dict[Any, Any] = dict(given_metadata)
    if data.draw(st.booleans(), label="as key"):
        mixed[odd] = "v"
    else:
        mixed[data.draw(metadata_keys, label="key")] = odd
    refused(lambda: check_metadata(mixed), "metadata", "strings")


@pytest.mark.parametrize("value", [None, "a=b", [("a", "b")], 3, {"a"}])
def test_metadata_that_is_not_a_mapping_is_refused_naming_it(value: object) -> None:
    refused(lambda: check_metadata(value), "metadata", "dict")


# --- check_archive_key -----------------------------------------------------------------------

# At most 8 segments of 20 characters (4 bytes at most each): always within 900 bytes.
segment_chars = st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="/")
segment = st.text(segment_chars, min_size=1, max_size=20).filter(lambda s: s not in (".", ".."))
segments = st.lists(segment, min_size=1, max_size=8)


def fits(key: str) -> bool:
    return len(key.encode()) <= MAX_ARCHIVE_KEY_BYTES


def job_shaped(key: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{32}\.mp4", key) is not None


valid_archive_keys = segments.map("/".join).filter(lambda k: not job_shaped(k))


@PROPERTY
@given(valid_archive_keys)
def test_any_relative_key_of_clean_segments_within_900_bytes_is_an_archive_key(key: str) -> None:
    assert check_archive_key(key) == key


def test_an_archive_key_of_exactly_900_bytes_is_accepted_and_one_more_is_refused() -> None:
    assert MAX_ARCHIVE_KEY_BYTES == 900
    widest = "d/" + "\u00e9" * 449  # 2 + 898 bytes of UTF-8
    assert len(widest.encode()) == 900
    assert check_archive_key(widest) == widest
    refused(lambda: check_archive_key(widest + "x"), "archive_key", "900", "901")
    refused(lambda: check_archive_key(""), "archive_key", "900")


@PROPERTY
@given(valid_archive_keys)
def test_an_archive_key_with_a_leading_slash_is_refused_naming_it(key: str) -> None:
    refused(lambda: check_archive_key("/" + key), "archive_key")


@PROPERTY
@given(segments.filter(lambda s: len(s) > 1), st.data())
def test_an_archive_key_with_an_empty_segment_is_refused_naming_it(
    parts: list[str], data: st.DataObject
) -> None:
    at = data.draw(st.integers(1, len(parts) - 1), label="at")
    key = "/".join(parts[:at]) + "//" + "/".join(parts[at:])
    refused(lambda: check_archive_key(key), "archive_key")
    refused(lambda: check_archive_key("/".join(parts) + "/"), "archive_key")


@PROPERTY
@given(segments, st.sampled_from([".", ".."]), st.data())
def test_an_archive_key_with_a_dot_or_dot_dot_segment_is_refused_naming_it(
    parts: list[str], dots: str, data: st.DataObject
) -> None:
    at = data.draw(st.integers(0, len(parts)), label="at")
    key = "/".join([*parts[:at], dots, *parts[at:]])
    refused(lambda: check_archive_key(key), "archive_key", ".")


@PROPERTY
@given(valid_archive_keys, control, st.data())
def test_an_archive_key_with_a_control_character_is_refused_naming_it(
    key: str, char: str, data: st.DataObject
) -> None:
    refused(lambda: check_archive_key(inserted(data, key, char)), "archive_key", "control")


@PROPERTY
@given(valid_archive_keys, segment_chars)
def test_an_archive_key_over_900_bytes_of_utf_8_is_refused_naming_the_limit(
    key: str, char: str
) -> None:
    longer = key + "/"
    while fits(longer):  # at most 900 turns
        longer += char
    refused(lambda: check_archive_key(longer), "archive_key", "900")


@PROPERTY
@given(st.text("0123456789abcdef", min_size=32, max_size=32))
def test_an_archive_key_shaped_like_a_jobs_own_key_is_refused(hex_id: str) -> None:
    refused(lambda: check_archive_key(hex_id + ".mp4"), "archive_key", ".mp4")


def test_an_archive_key_that_only_resembles_a_jobs_own_key_is_accepted() -> None:
    for key in (f"x/{JOB_ID}.mp4", f"{JOB_ID.upper()}.mp4", f"{JOB_ID[1:]}.mp4", f"{JOB_ID}.mov"):
        assert check_archive_key(key) == key


@pytest.mark.parametrize("key", ["a\ud800b", "\udfff.mp4"])
def test_an_archive_key_with_a_lone_surrogate_is_refused_naming_it(key: str) -> None:
    refused(lambda: check_archive_key(key), "archive_key", "surrogate")


@PROPERTY
@given(not_a_string)
def test_an_archive_key_that_is_not_a_string_is_refused_naming_it(key: object) -> None:
    refused(lambda: check_archive_key(key), "archive_key", "string")


# --- check_akool_id --------------------------------------------------------------------------


@PROPERTY
@given(st.from_regex(r"[A-Za-z0-9_-]{1,128}", fullmatch=True))
def test_any_1_to_128_letters_digits_underscores_or_dashes_are_an_akool_id(akool_id: str) -> None:
    assert check_akool_id(akool_id) == akool_id


@PROPERTY
@given(
    st.from_regex(r"[A-Za-z0-9_-]{0,100}", fullmatch=True),
    st.characters(exclude_characters="_-").filter(lambda c: not (c.isascii() and c.isalnum())),
    st.data(),
)
def test_an_akool_id_with_any_other_character_is_refused_naming_the_limit(
    text: str, char: str, data: st.DataObject
) -> None:
    refused(lambda: check_akool_id(inserted(data, text, char)), "akool_id", "128")


def test_an_akool_id_over_128_characters_or_empty_is_refused_naming_the_limit() -> None:
    assert MAX_AKOOL_ID_CHARS == 128
    assert check_akool_id("a" * 128) == "a" * 128
    refused(lambda: check_akool_id("a" * 129), "akool_id", "128")
    refused(lambda: check_akool_id(""), "akool_id", "128")
    refused(lambda: check_akool_id("abc\n"), "akool_id", "128")


@PROPERTY
@given(not_a_string)
def test_an_akool_id_that_is_not_a_string_is_refused_naming_it(akool_id: object) -> None:
    refused(lambda: check_akool_id(akool_id), "akool_id", "string")


# --- check_url -------------------------------------------------------------------------------

URL_NAMES = ("video_url", "audio_url", "webhook_url", "notify_url")
hosts = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]{2,6}){1,2}", fullmatch=True)
paths = st.text(st.characters(exclude_categories=("Cc", "Cs", "Z")))
good_urls = st.builds(
    lambda s, h, p: f"{s}://{h}/{p}", st.sampled_from(["http", "https"]), hosts, paths
)
unsafe = st.one_of(
    control, st.characters(categories=("Zs", "Zl", "Zp")), st.sampled_from(" \t\r\n")
)


@PROPERTY
@given(st.sampled_from(URL_NAMES), good_urls)
def test_an_http_url_with_a_host_and_nothing_unsafe_is_accepted(name: str, url: str) -> None:
    check_url(name, url)


@PROPERTY
@given(st.sampled_from(URL_NAMES), good_urls, unsafe, st.data())
def test_a_url_with_whitespace_or_a_control_character_anywhere_is_refused_naming_it(
    name: str, url: str, char: str, data: st.DataObject
) -> None:
    refused(lambda: check_url(name, inserted(data, url, char)), name)


@PROPERTY
@given(st.sampled_from(URL_NAMES), good_urls)
def test_a_url_over_8192_characters_is_refused_naming_the_limit(name: str, url: str) -> None:
    long_url = url + "a" * (MAX_URL_CHARS + 1 - len(url))
    refused(lambda: check_url(name, long_url), name, "8192", str(MAX_URL_CHARS + 1))


@pytest.mark.parametrize(
    "url",
    ["ftp://videos.example.com/x", "https:///x", "videos.example.com/x", "", "https://[::1/x"],
)
@pytest.mark.parametrize("name", URL_NAMES)
def test_a_url_that_is_not_http_s_with_a_host_is_refused_naming_it(name: str, url: str) -> None:
    refused(lambda: check_url(name, url), name, "http(s)")


@pytest.mark.parametrize("url", ["https://user:secret@host/x", "https://user@host/x"])
def test_a_url_with_a_user_name_is_refused_without_quoting_it(url: str) -> None:
    message = refused(lambda: check_url("video_url", url), "video_url")
    assert "secret" not in message
    assert "user@" not in message


@PROPERTY
@given(st.sampled_from(URL_NAMES), not_a_string)
def test_a_url_that_is_not_a_string_is_refused_naming_it(name: str, url: object) -> None:
    refused(lambda: check_url(name, url), name, "string")


# --- Request.digest --------------------------------------------------------------------------

# Small pools, so that drawn requests are often equal in all but one argument.
urls = st.sampled_from([VIDEO, AUDIO, "https://cdn.example.com/a.mp4", "http://h.example/b"])
maybe_urls = st.one_of(st.none(), urls)
signatures = st.sampled_from(
    [SIGNATURE, {"task": "app.other", "args": [1], "kwargs": {}}, {"task": "app.done", "args": [2]}]
)
small_metadata = st.dictionaries(
    st.sampled_from(["a", "b", "customer"]), st.sampled_from(["", "1", "x"]), max_size=3
)
lipsync_arguments = st.fixed_dictionaries(
    {
        "video_url": urls,
        "audio_url": urls,
        "webhook_url": maybe_urls,
        "notify_url": maybe_urls,
        "on_complete": st.one_of(st.none(), signatures),
        "metadata": st.one_of(st.none(), small_metadata),
        "archive_key": st.one_of(st.none(), st.sampled_from(["a.mp4", "b/c.mp4"])),
    }
)
idempotency_keys = st.one_of(st.none(), st.sampled_from(["key-1", "key-2"]))


def request(arguments: dict[str, Any], idempotency_key: str | None = None) -> contract.Request:
    arguments = dict(arguments)
    return lipsync_request(
        arguments.pop("video_url"),
        arguments.pop("audio_url"),
        arguments.pop("webhook_url"),
        idempotency_key=idempotency_key,
        **arguments,
    )


@PROPERTY
@given(lipsync_arguments, st.randoms(use_true_random=False))
def test_the_digest_is_equal_for_equal_requests_whatever_the_metadatas_key_order(
    arguments: dict[str, Any], rng: Any
) -> None:
    shuffled = dict(arguments)
    if arguments["metadata"] is not None:
        items = list(arguments["metadata"].items())
        rng.shuffle(items)
        shuffled["metadata"] = dict(items)
    assert request(arguments).digest == request(shuffled).digest
    assert request(arguments).digest == request(dict(reversed(list(arguments.items())))).digest


@PROPERTY
@given(lipsync_arguments, st.data())
def test_the_digest_differs_when_any_argument_differs(
    arguments: dict[str, Any], data: st.DataObject
) -> None:
    other = dict(arguments)
    name = data.draw(st.sampled_from([None, *arguments]), label="changed")
    if name is not None:
        other[name] = data.draw(lipsync_arguments, label="other")[name]
    first = request(arguments, data.draw(idempotency_keys, label="first key"))
    second = request(other, data.draw(idempotency_keys, label="second key"))
    assert (first.digest == second.digest) == (arguments == other)


def test_the_digest_leaves_the_idempotency_key_out_and_tells_the_two_kinds_apart() -> None:
    # The digest decides whether a reused key names the same request: the key is not in it.
    assert request_digest(idempotency_key="a") == request_digest(idempotency_key="b")
    assert request_digest() != adoption_request("a1b2").digest
    # An empty metadata is an argument given, not the same as none.
    assert request_digest(metadata={}) != request_digest()
    assert re.fullmatch(r"[0-9a-f]{64}", request_digest())


def request_digest(**arguments: Any) -> str:
    return lipsync_request(VIDEO, AUDIO, **arguments).digest


@PROPERTY
@given(
    st.from_regex(r"[A-Za-z0-9]{1,24}", fullmatch=True),
    st.from_regex(r"[A-Za-z0-9]{1,24}", fullmatch=True),
    small_metadata,
    idempotency_keys,
)
def test_an_adoptions_digest_differs_exactly_when_its_akool_id_or_arguments_do(
    first_id: str, second_id: str, given_metadata: dict[str, str], key: str | None
) -> None:
    first = adoption_request(first_id, metadata=given_metadata, idempotency_key=key)
    second = adoption_request(second_id, metadata=dict(reversed(given_metadata.items())))
    assert (first.digest == second.digest) == (first_id == second_id)


# --- lipsync_request / adoption_request ------------------------------------------------------

BAD_ARGUMENTS = {
    "video_url": "ftp://videos.example.com/in.mp4",
    "audio_url": "https://videos.example.com/a b.wav",
    "webhook_url": "https://user:pw@hooks.example.com/x",
    "notify_url": "https://hooks.example.com/\n",
    "on_complete": {"no": "task"},
    "idempotency_key": "k" * 256,
    "metadata": {"k": "v" * 501},
    "archive_key": "../escape.mp4",
}


@pytest.mark.parametrize("name", BAD_ARGUMENTS)
def test_a_lipsync_request_refuses_each_bad_argument_naming_it(name: str) -> None:
    arguments: dict[str, Any] = {"video_url": VIDEO, "audio_url": AUDIO, name: BAD_ARGUMENTS[name]}
    refused(lambda: lipsync_request(**arguments), name)


ADOPTION_ARGUMENTS = ("notify_url", "on_complete", "idempotency_key", "metadata", "archive_key")


@pytest.mark.parametrize("name", ADOPTION_ARGUMENTS)
def test_an_adoption_request_refuses_each_bad_argument_naming_it(name: str) -> None:
    refused(lambda: adoption_request("a1b2", **{name: BAD_ARGUMENTS[name]}), name)
    refused(lambda: adoption_request("a/b", **{name: BAD_ARGUMENTS[name]}), "akool_id")


def test_a_request_with_several_bad_arguments_names_the_first_in_order() -> None:
    everything_bad = dict(BAD_ARGUMENTS)
    message = refused(lambda: lipsync_request(**everything_bad), "video_url")
    assert "idempotency_key" not in message
    message = refused(
        lambda: lipsync_request(VIDEO, AUDIO, idempotency_key="", archive_key="/x"),
        "idempotency_key",
    )
    assert "archive_key" not in message


# --- the records made of a request -----------------------------------------------------------


def test_a_queued_job_carries_the_request_as_asked_and_its_digest() -> None:
    asked = lipsync_request(
        VIDEO,
        AUDIO,
        notify_url="https://hooks.example.com/done",
        on_complete=SIGNATURE,
        idempotency_key="order-7",
        metadata={"order": "7"},
        archive_key="orders/7.mp4",
    )
    job = queued_job(asked, JOB_ID, now=1_700_000_000.0)
    assert job.status is JobStatus.QUEUED
    assert (job.id, job.video_url, job.audio_url, job.webhook_url) == (JOB_ID, VIDEO, AUDIO, None)
    assert (job.created_ts, job.updated_ts, job.submitted_ts) == (1_700_000_000.0,) * 2 + (None,)
    assert (job.idempotency_key, job.metadata, job.archive_key) == (
        "order-7",
        {"order": "7"},
        "orders/7.mp4",
    )
    assert job.request_digest == asked.digest
    assert job.notify_url == "https://hooks.example.com/done"
    assert job.on_complete is not None and "app.done" in job.on_complete
    assert job.adopted_ts is None


def test_an_adopted_job_starts_submitted_polled_by_its_owner_and_expiring_from_now() -> None:
    asked = adoption_request("a1b2", idempotency_key="adopt-1")
    now = 1_700_000_000.0
    job = adopted_job(asked, JOB_ID, now=now, poll_timeout=600.0, poll_owner="poll-1")
    assert job.status is JobStatus.SUBMITTED
    assert (job.akool_id, job.video_url, job.audio_url) == ("a1b2", "", "")
    assert job.submitted_ts == job.adopted_ts == job.created_ts == now
    assert job.expires_ts == now + AKOOL_FILE_LIFETIME_SECONDS
    assert (job.poll_deadline_ts, job.poll_owner) == (now + 600.0, "poll-1")
    assert (job.idempotency_key, job.request_digest) == ("adopt-1", asked.digest)
