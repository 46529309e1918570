"""Tests of worker.video_kinds: each kind's builder puts exactly Akool's JSON in the request's
body, accepts every value within the documented limits and refuses any outside with a
ValueError naming the argument and the limit; the digest is stable and tells kinds apart.
All pure: nothing here needs Redis or Celery."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.akool import KINDS
from worker.contract import Request, lipsync_request
from worker.video_kinds import (
    MAX_DIMENSION,
    MAX_DURATION_SECONDS,
    MAX_ELEMENTS,
    MAX_LANGUAGES,
    MAX_PROMPT_CHARS,
    MAX_SPEAKERS,
    MAX_STUDIO_VOICE_BYTES,
    MIN_DIMENSION,
    MIN_DURATION_SECONDS,
    character_swap_request,
    talking_avatar_request,
    talking_photo_request,
    video_translation_request,
)

PROPERTY = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PHOTO = "https://media.example.com/face.png"
AUDIO = "https://media.example.com/voice.wav"
VIDEO = "https://media.example.com/in.mp4"
HOOK = "https://hooks.example.com/akool"
AVATAR = {"type": "avatar", "avatar_id": "dvp_Tristan", "scale_x": 1, "offset_x": 0.5}
SPEECH = {"type": "audio", "url": AUDIO, "voice_id": "v-1", "input_text": "Hello"}


def refused(call: Any, *words: str) -> str:
    """The message of the ValueError `call()` raises, checked to name every one of `words`."""
    with pytest.raises(ValueError) as caught:
        call()
    message = str(caught.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    return message


def body_of(request: Request) -> dict[str, Any]:
    body = request.fields["body"]
    # Exactly JSON: what Akool gets is what the request holds.
    assert json.loads(json.dumps(body, allow_nan=False)) == body
    kind = KINDS[request.kind]
    assert set(kind.required) <= set(body) <= set(kind.body_fields)
    assert kind.webhook_field not in body
    return dict(body)


# --- the bodies ------------------------------------------------------------------------------


def test_a_talking_photo_body_is_akools_json_with_only_the_fields_given() -> None:
    plain = talking_photo_request(PHOTO, AUDIO)
    assert plain.kind == "talking_photo"
    assert body_of(plain) == {"talking_photo_url": PHOTO, "audio_url": AUDIO}
    assert plain.fields["webhook_url"] is None
    full = talking_photo_request(PHOTO, AUDIO, prompt="waves", resolution="1080", webhook_url=HOOK)
    assert body_of(full) == {
        "talking_photo_url": PHOTO,
        "audio_url": AUDIO,
        "prompt": "waves",
        "resolution": "1080",
    }
    assert full.fields["webhook_url"] == HOOK


def test_a_video_translation_body_carries_its_defaults_and_the_options_given() -> None:
    plain = video_translation_request(VIDEO, "fr")
    assert plain.kind == "video_translation"
    assert body_of(plain) == {
        "url": VIDEO,
        "language": "fr",
        "source_language": "DEFAULT",
        "lipsync": False,
    }
    options = {
        "speaker_num": 2,
        "remove_bgm": True,
        "caption_type": 4,
        "caption_url": "https://media.example.com/c.srt",
        "studio_voice": {"style": "calm", "levels": [1, 2.5]},
        "dynamic_duration": False,
    }
    full = video_translation_request(
        VIDEO, "fr,de,pt-BR", source_language="en", lipsync=True, options=options
    )
    expected = {"url": VIDEO, "language": "fr,de,pt-BR", "source_language": "en", "lipsync": True}
    assert body_of(full) == {**expected, **options}


def test_a_talking_avatar_body_holds_plain_copies_of_the_elements() -> None:
    elements = [dict(AVATAR), dict(SPEECH)]
    request = talking_avatar_request(elements, avatar_from=2, width=1280, height=720)
    assert request.kind == "talking_avatar"
    assert body_of(request) == {
        "elements": [AVATAR, SPEECH],
        "avatar_from": 2,
        "width": 1280,
        "height": 720,
    }
    elements[0]["avatar_id"] = "changed later"
    assert request.fields["body"]["elements"][0]["avatar_id"] == "dvp_Tristan"


def test_a_character_swap_body_uses_akools_names_and_animates_by_default() -> None:
    plain = character_swap_request(PHOTO, VIDEO)
    assert plain.kind == "character_swap"
    assert body_of(plain) == {"image": PHOTO, "video": VIDEO, "mode": "animate"}
    full = character_swap_request(
        PHOTO, VIDEO, mode="replace", resolution="720p", duration=12.5, prompt="a knight"
    )
    assert body_of(full) == {
        "image": PHOTO,
        "video": VIDEO,
        "mode": "replace",
        "resolution": "720p",
        "duration": 12.5,
        "prompt": "a knight",
    }


def test_the_common_arguments_are_checked_and_kept_as_for_lipsync() -> None:
    request = character_swap_request(
        PHOTO, VIDEO, idempotency_key="o-1", metadata={"a": "1"}, archive_key="x/y.mp4"
    )
    assert (request.idempotency_key, request.metadata, request.archive_key) == (
        "o-1",
        {"a": "1"},
        "x/y.mp4",
    )
    refused(lambda: talking_photo_request(PHOTO, AUDIO, idempotency_key=""), "idempotency_key")
    refused(lambda: talking_photo_request(PHOTO, AUDIO, notify_url="ftp://x"), "notify_url")
    refused(
        lambda: talking_photo_request(PHOTO, AUDIO, webhook_url="https://u:p@h/"), "webhook_url"
    )


# --- the digest ------------------------------------------------------------------------------


def test_the_digest_is_stable_and_ignores_the_order_of_options() -> None:
    one = {"remove_bgm": True, "speaker_num": 3}
    first = video_translation_request(VIDEO, "fr", options=one)
    again = video_translation_request(VIDEO, "fr", options=dict(reversed(one.items())))
    assert first.digest == again.digest
    assert first.digest != video_translation_request(VIDEO, "fr").digest


def test_the_digest_differs_between_kinds_given_the_same_urls() -> None:
    digests = {
        lipsync_request(VIDEO, AUDIO).digest,
        talking_photo_request(VIDEO, AUDIO).digest,
        character_swap_request(VIDEO, AUDIO).digest,
        video_translation_request(VIDEO, "en").digest,
        talking_avatar_request([{"type": "audio", "url": AUDIO}], avatar_from=3).digest,
    }
    assert len(digests) == 5


@PROPERTY
@given(st.text(max_size=MAX_PROMPT_CHARS), st.text(max_size=MAX_PROMPT_CHARS))
def test_two_prompts_give_one_digest_exactly_when_they_are_equal(a: str, b: str) -> None:
    try:
        first = character_swap_request(PHOTO, VIDEO, prompt=a)
        second = character_swap_request(PHOTO, VIDEO, prompt=b)
    except ValueError:
        return  # a lone surrogate, refused
    assert (first.digest == second.digest) == (a == b)


# --- the limits, as properties ---------------------------------------------------------------


@PROPERTY
@given(st.integers(0, 2 * MAX_PROMPT_CHARS))
def test_a_prompt_is_accepted_up_to_its_limit_and_refused_past_it(length: int) -> None:
    prompt = "p" * length
    for build in (
        lambda: talking_photo_request(PHOTO, AUDIO, prompt=prompt),
        lambda: character_swap_request(PHOTO, VIDEO, prompt=prompt),
    ):
        if length <= MAX_PROMPT_CHARS:
            assert body_of(build())["prompt"] == prompt
        else:
            refused(build, "prompt", str(MAX_PROMPT_CHARS))


@PROPERTY
@given(st.one_of(st.integers(-500, 500), st.floats(allow_nan=True, allow_infinity=True)))
def test_a_duration_is_accepted_within_1_to_120_seconds_only(duration: float) -> None:
    build = lambda: character_swap_request(PHOTO, VIDEO, duration=duration)  # noqa: E731
    if MIN_DURATION_SECONDS <= duration <= MAX_DURATION_SECONDS:
        assert body_of(build())["duration"] == duration
    else:
        refused(build, "duration", str(MAX_DURATION_SECONDS))


@PROPERTY
@given(st.integers(0, 2 * MAX_DIMENSION), st.sampled_from(["width", "height"]))
def test_a_dimension_is_accepted_within_its_range_only(size: int, name: str) -> None:
    build = lambda: talking_avatar_request([AVATAR], avatar_from=2, **{name: size})  # noqa: E731
    if MIN_DIMENSION <= size <= MAX_DIMENSION:
        assert body_of(build())[name] == size
    else:
        refused(build, name, str(MIN_DIMENSION), str(MAX_DIMENSION))


@PROPERTY
@given(st.lists(st.from_regex(r"[A-Za-z0-9-]{1,16}", fullmatch=True), min_size=1, max_size=30))
def test_languages_are_accepted_up_to_their_count_and_refused_past_it(codes: list[str]) -> None:
    language = ",".join(codes)
    build = lambda: video_translation_request(VIDEO, language)  # noqa: E731
    if len(codes) <= MAX_LANGUAGES:
        assert body_of(build())["language"] == language
    else:
        refused(build, "language", str(MAX_LANGUAGES))


@PROPERTY
@given(st.integers(-5, 3 * MAX_SPEAKERS))
def test_a_speaker_count_is_accepted_from_1_to_its_bound(count: int) -> None:
    build = lambda: video_translation_request(VIDEO, "fr", options={"speaker_num": count})  # noqa: E731
    if 1 <= count <= MAX_SPEAKERS:
        assert body_of(build())["speaker_num"] == count
    else:
        refused(build, "speaker_num", str(MAX_SPEAKERS))


@PROPERTY
@given(st.integers(0, 2 * MAX_ELEMENTS))
def test_elements_are_accepted_from_1_to_their_bound(count: int) -> None:
    build = lambda: talking_avatar_request([AVATAR] * count, avatar_from=3)  # noqa: E731
    if 1 <= count <= MAX_ELEMENTS:
        assert len(body_of(build())["elements"]) == count
    else:
        refused(build, "elements", str(MAX_ELEMENTS))


# --- each refusal names its argument ---------------------------------------------------------

BAD_URL = "ftp://media.example.com/x"
REFUSALS: dict[str, tuple[Any, tuple[str, ...]]] = {
    "photo_url": (lambda: talking_photo_request(BAD_URL, AUDIO), ("photo_url",)),
    "audio_url": (lambda: talking_photo_request(PHOTO, "https://a b"), ("audio_url",)),
    "photo resolution": (
        lambda: talking_photo_request(PHOTO, AUDIO, resolution=720),
        ("resolution", "'720'", "'1080'"),
    ),
    "photo prompt type": (lambda: talking_photo_request(PHOTO, AUDIO, prompt=5), ("prompt",)),
    "video_url": (lambda: video_translation_request(BAD_URL, "fr"), ("video_url",)),
    "language empty code": (lambda: video_translation_request(VIDEO, "fr,,de"), ("language", "16")),
    "language space": (lambda: video_translation_request(VIDEO, "fr, de"), ("language",)),
    "language long code": (lambda: video_translation_request(VIDEO, "x" * 17), ("language", "16")),
    "source_language": (
        lambda: video_translation_request(VIDEO, "fr", source_language=""),
        ("source_language",),
    ),
    "lipsync": (lambda: video_translation_request(VIDEO, "fr", lipsync=1), ("lipsync",)),
    "options type": (lambda: video_translation_request(VIDEO, "fr", options=[]), ("options",)),
    "options unknown": (
        lambda: video_translation_request(VIDEO, "fr", options={"url": VIDEO}),
        ("options", "'url'"),
    ),
    "remove_bgm": (
        lambda: video_translation_request(VIDEO, "fr", options={"remove_bgm": "yes"}),
        ("remove_bgm",),
    ),
    "caption_type": (
        lambda: video_translation_request(VIDEO, "fr", options={"caption_type": 5}),
        ("caption_type", "4"),
    ),
    "caption_url": (
        lambda: video_translation_request(VIDEO, "fr", options={"caption_url": BAD_URL}),
        ("caption_url",),
    ),
    "studio_voice type": (
        lambda: video_translation_request(VIDEO, "fr", options={"studio_voice": "calm"}),
        ("studio_voice",),
    ),
    "studio_voice size": (
        lambda: video_translation_request(
            VIDEO, "fr", options={"studio_voice": {"x": "v" * MAX_STUDIO_VOICE_BYTES}}
        ),
        ("studio_voice", str(MAX_STUDIO_VOICE_BYTES)),
    ),
    "studio_voice nan": (
        lambda: video_translation_request(VIDEO, "fr", options={"studio_voice": {"x": math.nan}}),
        ("studio_voice",),
    ),
    "studio_voice tuple": (
        lambda: video_translation_request(VIDEO, "fr", options={"studio_voice": {"x": (1, 2)}}),
        ("studio_voice",),
    ),
    "studio_voice int key": (
        lambda: video_translation_request(VIDEO, "fr", options={"studio_voice": {1: "a"}}),
        ("studio_voice",),
    ),
    "dynamic_duration": (
        lambda: video_translation_request(VIDEO, "fr", options={"dynamic_duration": None}),
        ("dynamic_duration",),
    ),
    "avatar_from": (lambda: talking_avatar_request([AVATAR], avatar_from=1), ("avatar_from", "3")),
    "avatar_from bool": (
        lambda: talking_avatar_request([AVATAR], avatar_from=True),
        ("avatar_from",),
    ),
    "width float": (
        lambda: talking_avatar_request([AVATAR], avatar_from=2, width=720.0),
        ("width",),
    ),
    "elements type": (lambda: talking_avatar_request("avatar", avatar_from=2), ("elements",)),
    "element not a dict": (lambda: talking_avatar_request([1], avatar_from=2), ("elements[0]",)),
    "element without type": (
        lambda: talking_avatar_request([{"url": AUDIO}], avatar_from=2),
        ("elements[0]", "type"),
    ),
    "element type": (
        lambda: talking_avatar_request([AVATAR, {"type": "video"}], avatar_from=2),
        ("elements[1].type", "'audio'"),
    ),
    "element unknown key": (
        lambda: talking_avatar_request([{**AVATAR, "scale": 1}], avatar_from=2),
        ("elements[0]", "'scale'"),
    ),
    "element url": (
        lambda: talking_avatar_request([{"type": "image", "url": BAD_URL}], avatar_from=2),
        ("elements[0].url",),
    ),
    "element text": (
        lambda: talking_avatar_request([{**SPEECH, "input_text": "t" * 5001}], avatar_from=2),
        ("elements[0].input_text", "5000"),
    ),
    "element id": (
        lambda: talking_avatar_request([{**AVATAR, "avatar_id": 7}], avatar_from=2),
        ("elements[0].avatar_id",),
    ),
    "element number": (
        lambda: talking_avatar_request([{**AVATAR, "offset_y": math.inf}], avatar_from=2),
        ("elements[0].offset_y", "finite"),
    ),
    "image_url": (lambda: character_swap_request(BAD_URL, VIDEO), ("image_url",)),
    "swap video_url": (lambda: character_swap_request(PHOTO, "https:///x"), ("video_url",)),
    "mode": (lambda: character_swap_request(PHOTO, VIDEO, mode="Animate"), ("mode", "'replace'")),
    "swap resolution": (
        lambda: character_swap_request(PHOTO, VIDEO, resolution="1080"),
        ("resolution", "'1080p'"),
    ),
    "duration bool": (lambda: character_swap_request(PHOTO, VIDEO, duration=True), ("duration",)),
    "duration string": (lambda: character_swap_request(PHOTO, VIDEO, duration="5"), ("duration",)),
    "prompt surrogate": (
        lambda: character_swap_request(PHOTO, VIDEO, prompt="\ud800"),
        ("prompt", "surrogate"),
    ),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_each_bad_argument_is_refused_naming_it_and_its_limit(case: str) -> None:
    call, words = REFUSALS[case]
    refused(call, *words)


def test_a_refusal_never_quotes_a_value_that_may_hold_a_password() -> None:
    message = refused(lambda: character_swap_request(PHOTO, VIDEO, mode="u:secret@x"), "mode")
    assert "secret" not in message


def test_the_arguments_are_checked_in_order_the_kinds_own_before_the_common_ones() -> None:
    message = refused(
        lambda: character_swap_request(BAD_URL, BAD_URL, mode="x", idempotency_key=""),
        "image_url",
    )
    assert "idempotency_key" not in message
    refused(lambda: character_swap_request(PHOTO, VIDEO, idempotency_key=""), "idempotency_key")
