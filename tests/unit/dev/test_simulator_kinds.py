"""Tests of the simulator's other video kinds (talking photo, video translation, talking
avatar, character swap) beside lip-sync, over HTTP against a running simulator: each
submit's body checks, the scripting URL of each kind, the shared lookup and what video
translation adds to it (progress, the extra result files, the error at status 4), the
callbacks' type and webhook field, and the counts by kind."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.postsink import PostSink, post_sink
from worker.akool.crypto import decrypt_payload
from worker.dev.simulator import Simulator, SimulatorConfig
from worker.dev.simulator.kinds import KINDS, body_ok, primary_url
from worker.dev.simulator.scenario import parse_scenario
from worker.dev.stack import wait_until

TIMEOUT = 10
API_KEY = "test-key"
CLIENT_ID = "hook-client"
CLIENT_SECRET = "0123456789abcdef"  # 16 bytes: an AES key, so callbacks are sent
SMALL = 100_000
POLL = "/api/open/v3/content/video/infobymodelid"
AUDIO = "https://x.invalid/a.wav"
ALL_KINDS = ["lipsync", "talking_photo", "video_translation", "talking_avatar", "character_swap"]
NEW_KINDS = ALL_KINDS[1:]
PATHS = {
    "lipsync": "/api/open/v3/content/video/lipsync",
    "talking_photo": "/api/open/v3/content/video/createbytalkingphoto",
    "video_translation": "/api/open/v3/content/video/createbytranslate",
    "talking_avatar": "/api/open/v3/talkingavatar/create",
    "character_swap": "/api/open/v4/characterSwap/create",
}
CALLBACK_TYPES = {
    "lipsync": "lipsync",
    "talking_photo": "talking photo",
    "video_translation": "video translate",
    "talking_avatar": "avatar",
    "character_swap": "character swap",
}
DROP = object()  # a field a bad body leaves out


def body(kind: str, scripted: str = "https://x.invalid/v.mp4", **changes: Any) -> dict[str, Any]:
    """A valid submit body of ``kind`` whose scripting URL is ``scripted``, with ``changes``
    (a value of DROP leaves the field out)."""
    bodies: dict[str, dict[str, Any]] = {
        "lipsync": {"video_url": scripted, "audio_url": AUDIO},
        "talking_photo": {
            "talking_photo_url": scripted,
            "audio_url": AUDIO,
            "prompt": "waves",
            "resolution": "720",
        },
        "video_translation": {
            "url": scripted,
            "language": "fr,de",
            "source_language": "DEFAULT",
            "lipsync": True,
            "speaker_num": 1,
            "remove_bgm": False,
            "caption_type": 0,
            "caption_url": "",
            "studio_voice": {},
            "dynamic_duration": False,
        },
        "talking_avatar": {
            "width": 1280,
            "height": 720,
            "avatar_from": 3,
            "elements": [
                {"type": "avatar", "url": scripted, "scale_x": 1},
                {"type": "audio", "url": AUDIO},
            ],
        },
        "character_swap": {
            "image": "https://x.invalid/face.png",
            "video": scripted,
            "duration": 12.5,
            "resolution": "720p",
            "mode": "animate",
            "prompt": "smiles",
        },
    }
    out = bodies[kind]
    for name, value in changes.items():
        if value is DROP:
            out.pop(name)
        else:
            out[name] = value
    return out


@pytest.fixture
def sim() -> Iterator[Simulator]:
    config = SimulatorConfig(
        api_key=API_KEY, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, default_size=SMALL
    )
    simulator = Simulator(config, host="127.0.0.1", port=0).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.headers["x-api-key"] = API_KEY
        yield s


def submit(sim: Simulator, session: requests.Session, kind: str, fields: Any) -> dict[str, Any]:
    answer: dict[str, Any] = session.post(
        sim.base_url + PATHS[kind], json=fields, timeout=TIMEOUT
    ).json()
    return answer


def submit_ok(sim: Simulator, session: requests.Session, kind: str, fields: Any) -> str:
    answer = submit(sim, session, kind, fields)
    assert answer["code"] == 1000, answer
    return str(answer["data"]["_id"])


def lookup(sim: Simulator, session: requests.Session, job_id: str) -> dict[str, Any]:
    answer = session.get(sim.base_url + POLL, params={"video_model_id": job_id}, timeout=TIMEOUT)
    assert answer.json()["code"] == 1000
    data: dict[str, Any] = answer.json()["data"]
    return data


def lookups_until_done(sim: Simulator, session: requests.Session, job_id: str) -> list[Any]:
    answers = []
    for _ in range(20):
        answers.append(lookup(sim, session, job_id))
        if answers[-1]["video_status"] in (3, 4):
            return answers
    raise AssertionError(f"job never finished: {answers}")


def stats(sim: Simulator) -> dict[str, Any]:
    result: dict[str, Any] = requests.get(sim.base_url + "/_sim/stats", timeout=TIMEOUT).json()
    return result


def job_info(sim: Simulator, job_id: str) -> dict[str, Any]:
    result: dict[str, Any] = requests.get(
        sim.base_url + f"/_sim/jobs/{job_id}", timeout=TIMEOUT
    ).json()
    return result


def fetch(url: str) -> requests.Response:
    response = requests.get(url, timeout=TIMEOUT)
    response.raise_for_status()
    return response


# --- the table --------------------------------------------------------------------------------


def test_the_table_has_every_kind_at_its_documented_path() -> None:
    assert {name: kind.path for name, kind in KINDS.items()} == PATHS


def test_a_json_true_is_no_number_and_a_null_optional_field_counts_as_absent() -> None:
    assert not body_ok(KINDS["talking_avatar"], body("talking_avatar", avatar_from=True))
    assert body_ok(KINDS["character_swap"], body("character_swap", prompt=None, duration=None))


def test_an_avatar_is_scripted_by_its_first_elements_url() -> None:
    fields = body("talking_avatar", "https://x.invalid/me.mp4?sim_final=4")
    assert primary_url(KINDS["talking_avatar"], fields) == "https://x.invalid/me.mp4?sim_final=4"
    assert primary_url(KINDS["talking_avatar"], body("talking_avatar", elements=[])) is None


def test_a_hostile_error_reason_is_read_as_given() -> None:
    reason = parse_scenario("https://x.invalid/v.mp4?sim_error_reason=a%00%1b%0Ab").error_reason
    assert reason == "a\x00\x1b\nb"


# --- submit and the shared lookup, per kind ---------------------------------------------------


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_each_kind_is_submitted_polled_to_3_and_its_result_downloaded_whole(
    sim: Simulator, session: requests.Session, kind: str
) -> None:
    job_id = submit_ok(sim, session, kind, body(kind))
    answers = lookups_until_done(sim, session, job_id)
    assert [a["video_status"] for a in answers] == [1, 2, 3]
    content = fetch(answers[-1]["video"]).content
    info = job_info(sim, job_id)
    assert info["kind"] == kind
    assert len(content) == info["size"] == SMALL
    assert hashlib.sha256(content).hexdigest() == info["sha256"]


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_each_new_kind_is_scripted_by_its_primary_url(
    sim: Simulator, session: requests.Session, kind: str
) -> None:
    video = "https://x.invalid/v.mp4?sim_polls=0&sim_final=4&sim_submit_code=1005&sim_submit_code_times=1"
    assert submit(sim, session, kind, body(kind, video))["code"] == 1005
    job_id = submit_ok(sim, session, kind, body(kind, video))
    assert lookup(sim, session, job_id)["video_status"] == 4
    assert stats(sim)["submits_by_video_url"] == {video: 2}


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_each_new_kind_needs_the_same_auth_as_lip_sync(sim: Simulator, kind: str) -> None:
    with requests.Session() as s:
        s.headers["x-api-key"] = "wrong"
        assert submit(sim, s, kind, body(kind))["code"] == 1101
    answer = requests.post(sim.base_url + PATHS[kind], json=body(kind), timeout=TIMEOUT).json()
    assert answer["code"] == 1102
    assert stats(sim)["submits"] == 0


@pytest.mark.parametrize(
    ("kind", "changes"),
    [
        ("talking_photo", {"talking_photo_url": DROP}),
        ("talking_photo", {"audio_url": DROP}),
        ("talking_photo", {"audio_url": ""}),
        ("talking_photo", {"resolution": 720}),
        ("talking_photo", {"prompt": ["waves"]}),
        ("video_translation", {"url": DROP}),
        ("video_translation", {"language": DROP}),
        ("video_translation", {"language": ["fr"]}),
        ("video_translation", {"lipsync": "yes"}),
        ("video_translation", {"speaker_num": True}),
        ("video_translation", {"caption_type": "0"}),
        ("video_translation", {"studio_voice": "voice"}),
        ("video_translation", {"dynamic_duration": 1}),
        ("talking_avatar", {"elements": DROP}),
        ("talking_avatar", {"elements": []}),
        ("talking_avatar", {"elements": ["https://x.invalid/v.mp4"]}),
        ("talking_avatar", {"elements": [{"type": "avatar", "avatar_id": "a1"}]}),
        ("talking_avatar", {"avatar_from": DROP}),
        ("talking_avatar", {"avatar_from": "3"}),
        ("talking_avatar", {"width": 1.5}),
        ("character_swap", {"image": DROP}),
        ("character_swap", {"video": DROP}),
        ("character_swap", {"video": ""}),
        ("character_swap", {"duration": "12"}),
        ("character_swap", {"duration": True}),
        ("character_swap", {"mode": 1}),
    ],
)
def test_a_bad_body_is_answered_1003_counted_and_creates_no_job(
    sim: Simulator, session: requests.Session, kind: str, changes: dict[str, Any]
) -> None:
    assert submit(sim, session, kind, body(kind, **changes))["code"] == 1003
    counts = stats(sim)
    assert (counts["submits"], counts["submits_by_kind"]) == (1, {kind: 1})
    assert counts["jobs_by_kind"] == {}


@pytest.mark.parametrize("kind", NEW_KINDS)
def test_a_body_that_is_no_json_object_is_answered_1003(
    sim: Simulator, session: requests.Session, kind: str
) -> None:
    assert submit(sim, session, kind, ["not", "an", "object"])["code"] == 1003


def test_the_submits_answer_spells_its_kinds_status_and_webhook_field(
    sim: Simulator, session: requests.Session
) -> None:
    swap = submit(sim, session, "character_swap", body("character_swap", webhookUrl="http://h"))
    assert (swap["data"]["status"], swap["data"]["webhookurl"]) == (1, "")
    assert "video_status" not in swap["data"]
    photo = submit(sim, session, "talking_photo", body("talking_photo", webhookUrl="http://h"))
    assert (photo["data"]["video_status"], photo["data"]["webhookUrl"]) == (1, "http://h")
    assert "task_id" not in photo["data"]


def test_counts_by_kind_sit_beside_the_existing_counts(
    sim: Simulator, session: requests.Session
) -> None:
    for kind in ALL_KINDS:
        submit_ok(sim, session, kind, body(kind, f"https://x.invalid/{kind}.mp4"))
    submit(sim, session, "talking_photo", body("talking_photo", audio_url=DROP))
    counts = stats(sim)
    assert counts["submits"] == 6
    assert counts["submits_by_kind"] == {kind: 1 for kind in ALL_KINDS} | {"talking_photo": 2}
    assert counts["jobs_by_kind"] == {kind: 1 for kind in ALL_KINDS}
    assert counts["jobs_by_video_url"]["https://x.invalid/talking_avatar.mp4"] == 1
    requests.post(sim.base_url + "/_sim/reset", timeout=TIMEOUT)
    assert (stats(sim)["submits_by_kind"], stats(sim)["jobs_by_kind"]) == ({}, {})


@pytest.mark.parametrize("kind", ["lipsync", "talking_photo", "talking_avatar", "character_swap"])
def test_only_video_translation_adds_to_the_shared_lookup(
    sim: Simulator, session: requests.Session, kind: str
) -> None:
    job_id = submit_ok(sim, session, kind, body(kind, "https://x.invalid/v.mp4?sim_final=4"))
    answers = lookups_until_done(sim, session, job_id)
    assert all(
        set(a) == {"_id", "video_id", "video_status", "video", "create_time"} for a in answers
    )


# --- what video translation adds --------------------------------------------------------------


def test_a_translation_reports_progress_and_at_3_its_extra_files(
    sim: Simulator, session: requests.Session
) -> None:
    job_id = submit_ok(
        sim,
        session,
        "video_translation",
        body("video_translation", "https://x.invalid/v?sim_polls=3"),
    )
    answers = lookups_until_done(sim, session, job_id)
    progress = [a["progress"] for a in answers]
    assert progress[0] == 0 and progress[-1] == 100 and progress == sorted(progress)
    assert all(0 <= p <= 100 for p in progress)
    assert all("audio_splits" not in a for a in answers[:-1])
    splits = answers[-1]["audio_splits"]
    assert set(splits) == {"original_srt_url", "translated_srt_url", "no_caption_video_url"}
    assets = job_info(sim, job_id)["assets"]
    for field, name in [
        ("original_srt_url", "original.srt"),
        ("translated_srt_url", "translated.srt"),
    ]:
        response = fetch(splits[field])
        assert response.headers["Content-Type"] == "application/x-subrip"
        assert (
            response.text.startswith("1\n00:00:00,000 --> ") and response.text.count(" --> ") == 3
        )
        assert hashlib.sha256(response.content).hexdigest() == assets[name]
    video = fetch(splits["no_caption_video_url"])
    assert video.headers["Content-Type"] == "video/mp4"
    assert len(video.content) == SMALL
    assert hashlib.sha256(video.content).hexdigest() == assets["no_caption.mp4"]
    assert assets["no_caption.mp4"] != job_info(sim, job_id)["sha256"]
    assert fetch(splits["original_srt_url"]).content != fetch(splits["translated_srt_url"]).content
    assert stats(sim)["downloads"] == 0  # the video's own count is apart


def test_another_kinds_job_has_no_extra_files(sim: Simulator, session: requests.Session) -> None:
    job_id = submit_ok(sim, session, "talking_photo", body("talking_photo"))
    for name in ("original.srt", "no_caption.mp4"):
        answer = requests.get(f"{sim.base_url}/assets/{job_id}/{name}", timeout=TIMEOUT)
        assert answer.status_code == 404
    assert (
        requests.get(f"{sim.base_url}/assets/{'0' * 24}/original.srt", timeout=TIMEOUT).status_code
        == 404
    )


def test_a_failed_translation_answers_its_scripted_error_even_a_hostile_one(
    sim: Simulator, session: requests.Session
) -> None:
    reason = "bad\x00\x07\x1b[31m\r\nsource " + "x" * 5000
    video = (
        requests.Request(
            "GET",
            "https://x.invalid/v.mp4",
            params={"sim_final": 4, "sim_error_code": 2301, "sim_error_reason": reason},
        )
        .prepare()
        .url
    )
    job_id = submit_ok(sim, session, "video_translation", body("video_translation", video))
    final = lookups_until_done(sim, session, job_id)[-1]
    assert (final["video_status"], final["error_code"], final["error_reason"]) == (4, 2301, reason)
    assert "audio_splits" not in final and final["video"] == ""


def test_a_failed_translation_has_a_default_error(
    sim: Simulator, session: requests.Session
) -> None:
    fields = body("video_translation", "https://x.invalid/v.mp4?sim_final=4")
    final = lookups_until_done(sim, session, submit_ok(sim, session, "video_translation", fields))[
        -1
    ]
    assert isinstance(final["error_code"], int) and final["error_reason"]


# --- callbacks --------------------------------------------------------------------------------


@pytest.fixture
def hook() -> Iterator[tuple[str, type[PostSink]]]:
    with post_sink("/webhooks/akool") as sink:
        yield sink


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_each_kinds_callback_names_its_type_and_goes_to_its_webhook_field(
    sim: Simulator, session: requests.Session, hook: tuple[str, type[PostSink]], kind: str
) -> None:
    url, handler = hook
    field = "webhookurl" if kind == "character_swap" else "webhookUrl"
    job_id = submit_ok(sim, session, kind, body(kind, **{field: url}))
    wait_until(lambda: len(handler.bodies) >= 1, 10, "the callback")
    payload = decrypt_payload(handler.bodies[0]["dataEncrypt"], CLIENT_ID, CLIENT_SECRET)
    assert payload == {
        "_id": job_id,
        "status": 3,
        "type": CALLBACK_TYPES[kind],
        "url": f"{sim.base_url}/files/{job_id}.mp4?v=1",
    }


def test_a_character_swap_ignores_a_webhook_url_in_lip_syncs_spelling(
    sim: Simulator, session: requests.Session
) -> None:
    job_id = submit_ok(
        sim, session, "character_swap", body("character_swap", webhookUrl="http://h")
    )
    assert job_info(sim, job_id)["webhookUrl"] is None
