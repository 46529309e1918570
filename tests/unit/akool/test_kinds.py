"""Tests of worker.akool.kinds: the table of kinds is complete and consistent, a callback's
`type` finds its kind (tolerant of case and separators, never another kind's), and the
lip-sync row says what AkoolClient sends today (checked over real HTTP on 127.0.0.1)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from worker import akool
from worker.akool import KINDS, AkoolClient, Kind, kind_for_callback_type
from worker.akool.client import LIPSYNC_PATH
from worker.akool.kinds import MAX_CALLBACK_TYPE_CHARS, callback_key
from worker.config.settings import Secret
from worker.names import LIPSYNC_KIND as LIPSYNC

NAMES = ("lipsync", "talking_photo", "video_translation", "talking_avatar", "character_swap")
DOCUMENTED_TYPES = {
    "lipsync": "lipsync",
    "talking photo": "talking_photo",
    "video translate": "video_translation",
    "avatar": "talking_avatar",
}


def test_the_table_holds_the_five_kinds_each_under_its_own_name() -> None:
    assert set(KINDS) == set(NAMES)
    assert all(kind.name == name for name, kind in KINDS.items())
    assert KINDS[LIPSYNC] is KINDS["lipsync"]
    with pytest.raises(TypeError):
        KINDS["sixth"] = KINDS["lipsync"]  # type: ignore[index]


@pytest.mark.parametrize("name", NAMES)
def test_every_kind_has_a_path_a_webhook_field_a_callback_type_and_its_url_fields(
    name: str,
) -> None:
    kind = KINDS[name]
    assert kind.submit_path.startswith("/api/open/")
    assert kind.webhook_field in ("webhookUrl", "webhookurl")
    assert kind.webhook_field not in kind.body_fields
    assert kind.required, "every kind requires something"
    assert len(set(kind.body_fields)) == len(kind.body_fields)
    assert kind.callback_types
    assert all(callback_key(t) == t for t in kind.callback_types)
    for url_field in kind.url_fields:
        assert url_field.split("[]")[0] in kind.body_fields


def test_no_two_kinds_share_a_path_or_a_callback_type() -> None:
    paths = [kind.submit_path for kind in KINDS.values()]
    types = [t for kind in KINDS.values() for t in kind.callback_types]
    assert len(set(paths)) == len(paths)
    assert len(set(types)) == len(types)


def test_only_character_swap_spells_its_webhook_field_in_lower_case() -> None:
    lower = {kind.name for kind in KINDS.values() if kind.webhook_field == "webhookurl"}
    assert lower == {"character_swap"}


def test_only_video_translation_names_extra_files_each_with_its_type_and_suffix() -> None:
    assert {kind.name for kind in KINDS.values() if kind.assets} == {"video_translation"}
    assets = {a.field: a for a in KINDS["video_translation"].assets}
    assert set(assets) == {"original_srt_url", "translated_srt_url", "no_caption_video_url"}
    assert {a.container for a in assets.values()} == {"audio_splits"}
    for asset in assets.values():
        expected = (
            ("video/mp4", ".mp4") if "video" in asset.field else ("application/x-subrip", ".srt")
        )
        assert (asset.content_type, asset.suffix[-4:]) == expected
    # Archived next to the video under one stem: the suffixes must tell them apart.
    assert len({a.suffix for a in assets.values()}) == len(assets)
    assert ".mp4" not in {a.suffix for a in assets.values()}


def test_the_rows_are_data_frozen_and_equal_by_value() -> None:
    kind = KINDS["talking_photo"]
    with pytest.raises(AttributeError):
        kind.submit_path = "/elsewhere"  # type: ignore[misc]
    assert Kind(**{f: getattr(kind, f) for f in kind.__dataclass_fields__}) == kind


def test_the_face_exports_the_table() -> None:
    for name in ("KINDS", "Kind", "Asset", "kind_for_callback_type"):
        assert name in akool.__all__


# --- kind_for_callback_type -----------------------------------------------------------------


@pytest.mark.parametrize(("callback_type", "name"), DOCUMENTED_TYPES.items())
def test_each_documented_callback_type_finds_its_kind(callback_type: str, name: str) -> None:
    assert kind_for_callback_type(callback_type) is KINDS[name]


@pytest.mark.parametrize(
    "spelling",
    ["character swap", "characterSwap", "character_swap", "Character-Swap", "CHARACTERSWAP"],
)
def test_character_swaps_undocumented_type_is_accepted_in_the_spellings_its_name_suggests(
    spelling: str,
) -> None:
    assert kind_for_callback_type(spelling) is KINDS["character_swap"]


@pytest.mark.parametrize(
    "spelling", ["Talking_Photo", " talking  photo ", "VIDEO-TRANSLATE", "LipSync", "Avatar"]
)
def test_a_callback_type_is_matched_whatever_its_case_and_separators(spelling: str) -> None:
    kind = kind_for_callback_type(spelling)
    assert kind is not None and callback_key(spelling) in kind.callback_types


@pytest.mark.parametrize(
    "unknown", ["", "faceswap", "lip sync", "talking avatar", "photo", "swap", None, 3, ["avatar"]]
)
def test_a_type_no_kind_carries_finds_none(unknown: Any) -> None:
    assert kind_for_callback_type(unknown) is None


def test_an_overlong_type_finds_none_even_when_it_folds_to_a_known_one() -> None:
    padded = "avatar" + " " * MAX_CALLBACK_TYPE_CHARS
    assert kind_for_callback_type(padded) is None


@settings(max_examples=200, deadline=None, database=None)
@given(st.text(max_size=80))
def test_a_callback_type_finds_a_kind_exactly_when_its_folded_spelling_is_in_that_row(
    text: str,
) -> None:
    kind = kind_for_callback_type(text)
    owners = [
        k
        for k in KINDS.values()
        if len(text) <= MAX_CALLBACK_TYPE_CHARS and callback_key(text) in k.callback_types
    ]
    assert owners == ([] if kind is None else [kind])


# --- the lip-sync row against the client ----------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """Akool's submit, answered with an id; every POST's path and JSON body recorded."""

    seen: list[tuple[str, dict[str, Any]]]

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append((self.path, body))  # type: ignore[attr-defined]
        answer = json.dumps({"code": 1000, "msg": "OK", "data": {"_id": "sim-1"}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_the_lipsync_row_says_what_the_client_sends_today(recorder: ThreadingHTTPServer) -> None:
    base = f"http://127.0.0.1:{recorder.server_address[1]}"
    with requests.Session() as session:
        client = AkoolClient(base, api_key=Secret("k-1"), session=session, timeout=10)
        client.submit("https://v.example.com/a.mp4", "https://v.example.com/a.wav")
        client.submit(
            "https://v.example.com/b.mp4", "https://v.example.com/b.wav", "https://h.example.com/cb"
        )
    row = KINDS["lipsync"]
    assert row.submit_path == LIPSYNC_PATH
    (first_path, plain), (second_path, hooked) = recorder.seen  # type: ignore[attr-defined]
    assert first_path == second_path == row.submit_path
    assert set(plain) == set(row.required) == set(row.url_fields)
    assert set(hooked) == {*row.required, row.webhook_field}
    assert hooked[row.webhook_field] == "https://h.example.com/cb"
