"""Akool's video kinds on the dashboard, against a fake store and a fake Redis: a job's kind
on its page and the Akool body of a kind other than lip-sync (escaped, whatever its prompt
holds), and the jobs list's kind filter (a record of an earlier release is lip-sync's)."""

from __future__ import annotations

from typing import Any, cast

from tests.unit.web.test_dashboard import AUTH, JOB_ID, Call, job
from tests.unit.web.test_dashboard_contract import CancellingStore, dashboard
from worker.web.dashboard.reads import matching_ids

PHOTO = "https://images.example.com/face.png"
HOSTILE_PROMPT = "<script>alert('p')</script>"


def page_of(**values: Any) -> str:
    answer = Call(dashboard(CancellingStore(job(**values))), "GET", f"/jobs/{JOB_ID}", **AUTH)
    assert answer.status == 200
    return answer.body


def test_a_lipsync_job_shows_its_kind_and_urls_and_no_akool_body() -> None:
    body = page_of()

    assert '<span class="status" id="kind">lipsync</span>' in body
    assert '<dd id="job-kind">lipsync' in body and "/content/video/lipsync" in body
    assert "https://videos.example.com/in.mp4" in body
    assert 'id="akool-body"' not in body


def test_a_talking_photos_page_shows_its_kind_and_its_akool_body_escaped() -> None:
    akool_body = {"talking_photo_url": PHOTO, "audio_url": "https://a.example.com/v.wav"}
    akool_body["prompt"] = HOSTILE_PROMPT
    body = page_of(kind="talking_photo", body=akool_body, video_url="", audio_url="")

    assert '<span class="status" id="kind">talking_photo</span>' in body
    assert "createbytalkingphoto" in body
    shown = body.split('<pre id="akool-body">')[1].split("</pre>")[0]
    assert PHOTO in shown and HOSTILE_PROMPT not in body
    assert "&lt;script&gt;alert(&#39;p&#39;)&lt;/script&gt;" in shown
    assert "<dt>video</dt>" not in body and "<dt>audio</dt>" not in body


def test_an_adopted_jobs_kind_is_unknown_and_names_no_submit_path() -> None:
    body = page_of(kind="unknown", adopted_ts=1_700_000_000.0, akool_id="ak-1")

    assert '<dd id="job-kind">unknown</dd>' in body and "submitted at" not in body


class FakeRedis:
    """The jobs index and each record's fields, as `matching_ids` reads them."""

    def __init__(self, records: dict[str, dict[str, str]]) -> None:
        self.records = records
        self._calls: list[list[bytes | None]] = []

    def zrevrange(self, key: str, start: int, stop: int) -> list[bytes]:
        return [job_id.encode() for job_id in self.records][start : stop + 1]

    def pipeline(self, transaction: bool = True) -> FakeRedis:
        return self

    def hmget(self, key: str, *fields: str) -> None:
        record = self.records[key.rpartition(":")[2]]
        self._calls.append([record[f].encode() if f in record else None for f in fields])

    def execute(self, raise_on_error: bool = True) -> list[list[bytes | None]]:
        calls, self._calls = self._calls, []
        return calls


def test_the_kind_filter_lists_only_that_kind_and_old_records_are_lipsync() -> None:
    client = cast(
        Any,
        FakeRedis(
            {
                "a" * 32: {"status": "archived", "kind": "talking_photo"},
                "b" * 32: {"status": "archived"},  # a record of the release before kinds
                "c" * 32: {"status": "failed", "kind": "lipsync"},
                "d" * 32: {"status": "failed", "kind": "talking_photo"},
            }
        ),
    )

    assert matching_ids(client, None, "", kind="talking_photo")[0] == ["a" * 32, "d" * 32]
    assert matching_ids(client, None, "", kind="lipsync")[0] == ["b" * 32, "c" * 32]
    assert matching_ids(client, "failed", "", kind="talking_photo")[0] == ["d" * 32]
    assert matching_ids(client, None, "", kind="character_swap")[0] == []
