"""Tests of the Akool lip-sync API simulator over HTTP: its endpoints, downloads, controls,
rate limit and webhook callbacks. The scenario parsing, the generated content, the shared
state, the command line and the HTTP plumbing have their own test_simulator_*.py files."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import urllib3

from tests.postsink import PostSink, post_sink
from worker.akool.crypto import decrypt_payload, sign
from worker.dev.simulator import WEBHOOK_ATTEMPTS, Simulator, SimulatorConfig
from worker.dev.stack import wait_until

TIMEOUT = 10
API_KEY = "test-key"
CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret"
SMALL = 200_000
SUBMIT = "/api/open/v3/content/video/lipsync"
POLL = "/api/open/v3/content/video/infobymodelid"
TOKEN = "/api/open/v3/getToken"


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


def submit(
    sim: Simulator, session: requests.Session, video_url: str, **extra: Any
) -> requests.Response:
    body = {"video_url": video_url, "audio_url": "https://example.invalid/a.wav", **extra}
    return session.post(sim.base_url + SUBMIT, json=body, timeout=TIMEOUT)


def submit_ok(sim: Simulator, session: requests.Session, video_url: str) -> str:
    answer = submit(sim, session, video_url).json()
    assert answer["code"] == 1000, answer
    return str(answer["data"]["_id"])


def poll(sim: Simulator, session: requests.Session, job_id: str) -> requests.Response:
    return session.get(sim.base_url + POLL, params={"video_model_id": job_id}, timeout=TIMEOUT)


def stats(sim: Simulator) -> dict[str, Any]:
    result: dict[str, Any] = requests.get(sim.base_url + "/_sim/stats", timeout=TIMEOUT).json()
    return result


def job_info(sim: Simulator, job_id: str) -> dict[str, Any]:
    result: dict[str, Any] = requests.get(
        sim.base_url + f"/_sim/jobs/{job_id}", timeout=TIMEOUT
    ).json()
    return result


def poll_until_done(sim: Simulator, session: requests.Session, job_id: str) -> list[int]:
    statuses: list[int] = []
    for _ in range(20):
        data = poll(sim, session, job_id).json()["data"]
        statuses.append(data["video_status"])
        if data["video_status"] in (3, 4):
            return statuses
    raise AssertionError(f"job never finished: {statuses}")


def download(url: str) -> bytes:
    with requests.get(url, stream=True, timeout=TIMEOUT) as response:
        response.raise_for_status()
        return b"".join(response.iter_content(64 * 1024))


def test_get_token_with_matching_credentials_answers_token_at_top_level(sim: Simulator) -> None:
    body = {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}
    answer = requests.post(sim.base_url + TOKEN, json=body, timeout=TIMEOUT).json()
    assert answer["code"] == 1000
    assert isinstance(answer["token"], str) and answer["token"]


def test_get_token_with_wrong_secret_answers_1101(sim: Simulator) -> None:
    body = {"clientId": CLIENT_ID, "clientSecret": "nope"}
    response = requests.post(sim.base_url + TOKEN, json=body, timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json()["code"] == 1101
    assert stats(sim)["token_requests"] == 1


def test_bearer_token_authorises_submit_and_wins_over_a_wrong_api_key(sim: Simulator) -> None:
    body = {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}
    token = requests.post(sim.base_url + TOKEN, json=body, timeout=TIMEOUT).json()["token"]
    with requests.Session() as s:
        s.headers.update({"Authorization": f"Bearer {token}", "x-api-key": "wrong"})
        assert submit(sim, s, "https://x.invalid/v.mp4").json()["code"] == 1000


def test_unknown_bearer_token_answers_1101_even_with_a_good_api_key(sim: Simulator) -> None:
    with requests.Session() as s:
        s.headers.update({"Authorization": "Bearer bogus", "x-api-key": API_KEY})
        assert submit(sim, s, "https://x.invalid/v.mp4").json()["code"] == 1101


def test_submit_with_wrong_api_key_answers_1101_and_creates_no_job(sim: Simulator) -> None:
    with requests.Session() as s:
        s.headers["x-api-key"] = "wrong"
        answer = submit(sim, s, "https://x.invalid/v.mp4").json()
    assert answer["code"] == 1101
    assert stats(sim)["submits"] == 0


def test_submit_without_credentials_answers_1102(sim: Simulator) -> None:
    answer = requests.post(sim.base_url + SUBMIT, json={}, timeout=TIMEOUT).json()
    assert answer["code"] == 1102


def test_submit_without_audio_url_answers_1003(sim: Simulator, session: requests.Session) -> None:
    answer = session.post(
        sim.base_url + SUBMIT, json={"video_url": "https://x.invalid/v.mp4"}, timeout=TIMEOUT
    ).json()
    assert answer["code"] == 1003


def test_submit_with_non_json_body_answers_1003(sim: Simulator, session: requests.Session) -> None:
    answer = session.post(sim.base_url + SUBMIT, data=b"not json", timeout=TIMEOUT).json()
    assert answer["code"] == 1003


def test_submit_answers_a_vendor_like_job_record(sim: Simulator, session: requests.Session) -> None:
    data = submit(sim, session, "https://x.invalid/v.mp4", webhookUrl="https://h.invalid/cb")
    record = data.json()["data"]
    assert len(record["_id"]) == 24 and int(record["_id"], 16) >= 0
    assert record["video_status"] == 1 and record["video"] == ""
    assert record["webhookUrl"] == "https://h.invalid/cb"
    assert record["lipsync"] is True and record["video_id"] != record["_id"]


def test_poll_of_unknown_job_answers_1008(sim: Simulator, session: requests.Session) -> None:
    assert poll(sim, session, "0" * 24).json()["code"] == 1008


def test_default_job_goes_1_2_3_and_download_matches_reported_sha256(
    sim: Simulator, session: requests.Session
) -> None:
    job_id = submit_ok(sim, session, "https://x.invalid/v.mp4")
    assert poll_until_done(sim, session, job_id) == [1, 2, 3]
    data = poll(sim, session, job_id).json()["data"]
    assert data["video"] == f"{sim.base_url}/files/{job_id}.mp4?v=2"  # the second URL given
    content = download(data["video"])
    info = job_info(sim, job_id)
    assert len(content) == info["size"] == SMALL
    assert hashlib.sha256(content).hexdigest() == info["sha256"]
    assert (info["polls"], info["downloads"], info["status"]) == (4, 1, 3)


def test_download_sends_video_content_type_and_length(
    sim: Simulator, session: requests.Session
) -> None:
    job_id = submit_ok(sim, session, "https://x.invalid/v.mp4?sim_polls=0&sim_size=70000")
    url = poll(sim, session, job_id).json()["data"]["video"]
    with requests.get(url, stream=True, timeout=TIMEOUT) as response:
        assert response.headers["Content-Type"] == "video/mp4"
        assert response.headers["Content-Length"] == "70000"
        assert len(response.content) == 70000


def test_sim_final_4_ends_failed_without_video(sim: Simulator, session: requests.Session) -> None:
    job_id = submit_ok(sim, session, "https://x.invalid/v.mp4?sim_final=4")
    assert poll_until_done(sim, session, job_id) == [1, 2, 4]
    assert poll(sim, session, job_id).json()["data"]["video"] == ""


def test_sim_seconds_keeps_job_processing_until_time_passes(
    sim: Simulator, session: requests.Session
) -> None:
    job_id = submit_ok(sim, session, "https://x.invalid/v.mp4?sim_polls=0&sim_seconds=30")
    assert poll(sim, session, job_id).json()["data"]["video_status"] == 2


def test_sim_submit_code_answers_that_code_the_first_k_times(
    sim: Simulator, session: requests.Session
) -> None:
    url = "https://x.invalid/v.mp4?sim_submit_code=1005&sim_submit_code_times=2"
    answers = [submit(sim, session, url).json() for _ in range(3)]
    assert [a["code"] for a in answers] == [1005, 1005, 1000]
    assert answers[0]["data"] is None
    assert stats(sim)["submits_by_video_url"] == {url: 3}


def test_sim_submit_http_answers_html_and_creates_no_job(
    sim: Simulator, session: requests.Session
) -> None:
    url = "https://x.invalid/v.mp4?sim_submit_http=502"
    first = submit(sim, session, url)
    assert first.status_code == 502
    assert first.text.startswith("<html>")
    assert submit(sim, session, url).json()["code"] == 1000
    assert stats(sim)["submits"] == 2
    assert len(sim.state.jobs) == 1


def test_sim_submit_http_after_create_creates_a_job_before_failing(
    sim: Simulator, session: requests.Session
) -> None:
    url = "https://x.invalid/v.mp4?sim_submit_http=504&sim_submit_http_after_create=1"
    assert submit(sim, session, url).status_code == 504
    assert len(sim.state.jobs) == 1
    assert submit(sim, session, url).json()["code"] == 1000
    assert stats(sim)["submits_by_video_url"] == {url: 2}
    assert len(sim.state.jobs) == 2


def test_sim_poll_http_answers_html_on_the_first_poll_then_proceeds(
    sim: Simulator, session: requests.Session
) -> None:
    job_id = submit_ok(sim, session, "https://x.invalid/v.mp4?sim_poll_http=503")
    first = poll(sim, session, job_id)
    assert first.status_code == 503 and "Bad gateway" in first.text
    assert poll_until_done(sim, session, job_id) == [1, 2, 3]
    assert job_info(sim, job_id)["polls"] == 4


def test_sim_poll_code_answers_that_code_the_first_k_polls(
    sim: Simulator, session: requests.Session
) -> None:
    url = "https://x.invalid/v.mp4?sim_poll_code=1005&sim_poll_code_times=1"
    job_id = submit_ok(sim, session, url)
    assert poll(sim, session, job_id).json()["code"] == 1005
    assert poll(sim, session, job_id).json()["data"]["video_status"] == 1


def test_sim_truncate_times_1_cuts_the_first_download_short_then_serves_it_whole(
    sim: Simulator, session: requests.Session
) -> None:
    job_id = submit_ok(sim, session, "https://x.invalid/v.mp4?sim_polls=0&sim_truncate_times=1")
    url = poll(sim, session, job_id).json()["data"]["video"]
    errors = (
        requests.exceptions.ChunkedEncodingError,
        requests.exceptions.ConnectionError,
        urllib3.exceptions.ProtocolError,
    )
    with pytest.raises(errors):
        download(url)
    content = download(url)
    assert hashlib.sha256(content).hexdigest() == job_info(sim, job_id)["sha256"]
    assert job_info(sim, job_id)["downloads"] == 2


@pytest.mark.parametrize(("mode", "status"), [("expired", 410), ("gone", 404), ("forbidden", 403)])
def test_sim_file_error_modes_answer_their_http_status(
    sim: Simulator, session: requests.Session, mode: str, status: int
) -> None:
    job_id = submit_ok(sim, session, f"https://x.invalid/v.mp4?sim_polls=0&sim_file={mode}")
    url = poll(sim, session, job_id).json()["data"]["video"]
    assert requests.get(url, timeout=TIMEOUT).status_code == status


def test_sim_file_times_answers_the_error_to_the_first_k_downloads_then_serves_the_video(
    sim: Simulator, session: requests.Session
) -> None:
    video = "https://x.invalid/v.mp4?sim_polls=0&sim_file=gone&sim_file_times=2"
    job_id = submit_ok(sim, session, video)
    url = poll(sim, session, job_id).json()["data"]["video"]
    answers = [requests.get(url, timeout=TIMEOUT).status_code for _ in range(3)]
    assert answers == [404, 404, 200]


def test_sim_file_gone_urls_makes_the_first_urls_dead_links_and_later_ones_live(
    sim: Simulator, session: requests.Session
) -> None:
    job_id = submit_ok(sim, session, "https://x.invalid/v.mp4?sim_polls=0&sim_file_gone_urls=1")
    first = poll(sim, session, job_id).json()["data"]["video"]
    second = poll(sim, session, job_id).json()["data"]["video"]
    assert (first.rsplit("?", 1)[1], second.rsplit("?", 1)[1]) == ("v=1", "v=2")
    assert requests.get(first, timeout=TIMEOUT).status_code == 404
    assert len(download(second)) == SMALL
    assert job_info(sim, job_id)["urls_given"] == 2


def test_sim_bad_video_answers_that_text_as_the_video_the_first_k_completed_polls(
    sim: Simulator, session: requests.Session
) -> None:
    video = "https://x.invalid/v.mp4?sim_polls=0&sim_bad_video=null&sim_bad_video_times=2"
    job_id = submit_ok(sim, session, video)
    answers = [poll(sim, session, job_id).json()["data"] for _ in range(3)]
    assert [a["video_status"] for a in answers] == [3, 3, 3]
    assert [a["video"] for a in answers[:2]] == ["null", "null"]
    assert answers[2]["video"].startswith(sim.base_url + "/files/")


def test_an_outage_answers_every_akool_endpoint_with_its_status_until_it_ends(
    sim: Simulator, session: requests.Session
) -> None:
    job_id = submit_ok(sim, session, "https://x.invalid/v.mp4?sim_polls=0")
    answer = session.post(sim.base_url + "/_sim/outage", json={"status": 502, "seconds": 30})
    assert answer.status_code == 200
    assert poll(sim, session, job_id).status_code == 502
    assert submit(sim, session, "https://x.invalid/w.mp4").status_code == 502
    assert session.post(sim.base_url + TOKEN, json={}, timeout=TIMEOUT).status_code == 502
    assert stats(sim)["submits"] == 1  # refused before any work, like a gateway's error
    session.post(sim.base_url + "/_sim/outage", json={"seconds": 0}, timeout=TIMEOUT)
    assert poll(sim, session, job_id).json()["data"]["video_status"] == 3


@pytest.mark.parametrize(
    "body", [{"status": 200, "seconds": 5}, {"status": 503}, {"seconds": -1}, [], None]
)
def test_an_outage_with_a_bad_status_or_length_is_refused(
    sim: Simulator, session: requests.Session, body: Any
) -> None:
    answer = session.post(sim.base_url + "/_sim/outage", json=body, timeout=TIMEOUT)
    assert answer.status_code == 400


def test_download_of_unknown_job_answers_404(sim: Simulator) -> None:
    response = requests.get(sim.base_url + "/files/" + "f" * 24 + ".mp4", timeout=TIMEOUT)
    assert response.status_code == 404


def test_revoke_tokens_makes_the_next_bearer_call_answer_1101(sim: Simulator) -> None:
    body = {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}
    token = requests.post(sim.base_url + TOKEN, json=body, timeout=TIMEOUT).json()["token"]
    with requests.Session() as s:
        s.headers["Authorization"] = f"Bearer {token}"
        assert submit(sim, s, "https://x.invalid/v.mp4").json()["code"] == 1000
        revoked = requests.post(sim.base_url + "/_sim/revoke-tokens", timeout=TIMEOUT).json()
        assert revoked == {"revoked": 1}
        assert submit(sim, s, "https://x.invalid/v.mp4").json()["code"] == 1101


def test_reset_forgets_jobs_and_counters(sim: Simulator, session: requests.Session) -> None:
    job_id = submit_ok(sim, session, "https://x.invalid/v.mp4")
    requests.post(sim.base_url + "/_sim/reset", timeout=TIMEOUT)
    assert stats(sim)["submits"] == 0
    assert poll(sim, session, job_id).json()["code"] == 1008


def test_concurrent_submits_are_all_counted(sim: Simulator) -> None:
    def worker() -> None:
        with requests.Session() as s:
            s.headers["x-api-key"] = API_KEY
            for _ in range(5):
                submit(sim, s, "https://x.invalid/v.mp4")

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert stats(sim)["submits"] == 40
    assert len(sim.state.jobs) == 40


# --- slow submits, Retry-After and the rate limit ---------------------------------------------


def set_rate_limit(sim: Simulator, per_second: Any) -> requests.Response:
    return requests.post(
        sim.base_url + "/_sim/rate-limit", json={"per_second": per_second}, timeout=TIMEOUT
    )


def wait_for_jobs(sim: Simulator, count: int) -> None:
    for _ in range(100):
        if len(sim.state.jobs) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"the simulator never had {count} job(s)")


def test_sim_submit_delay_creates_the_job_before_holding_back_the_answer(
    sim: Simulator, session: requests.Session
) -> None:
    url = "https://x.invalid/v.mp4?sim_submit_delay=3"
    body = {"video_url": url, "audio_url": "https://example.invalid/a.wav"}
    # The client gives up long before the answer comes, as a killed worker would.
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.post(sim.base_url + SUBMIT, json=body, timeout=(TIMEOUT, 0.5))
    wait_for_jobs(sim, 1)
    assert stats(sim)["submits_by_video_url"] == {url: 1}


def test_sim_submit_delay_still_answers_the_job_record_once_the_delay_is_over(
    sim: Simulator, session: requests.Session
) -> None:
    answer = submit(sim, session, "https://x.invalid/v.mp4?sim_submit_delay=0.2").json()
    assert answer["code"] == 1000
    assert answer["data"]["_id"] in sim.state.jobs


def test_sim_retry_after_adds_the_header_to_a_scripted_http_error(
    sim: Simulator, session: requests.Session
) -> None:
    job_id = submit_ok(sim, session, "https://x.invalid/v.mp4?sim_poll_http=429&sim_retry_after=7")
    first = poll(sim, session, job_id)
    assert first.status_code == 429
    assert first.headers["Retry-After"] == "7"
    assert "Retry-After" not in poll(sim, session, job_id).headers
    refused = submit(sim, session, "https://x.invalid/v.mp4?sim_submit_http=503&sim_retry_after=2")
    assert (refused.status_code, refused.headers["Retry-After"]) == (503, "2")


def test_requests_beyond_the_rate_limit_in_one_second_are_answered_1005(
    sim: Simulator, session: requests.Session
) -> None:
    job_id = submit_ok(sim, session, "https://x.invalid/v.mp4")
    assert set_rate_limit(sim, 1).json() == {"per_second": 1}
    # Back-to-back polls: at most one per whole second passes, so a 1005 comes quickly.
    answers = []
    for _ in range(20):
        answers.append(poll(sim, session, job_id).json())
        if answers[-1]["code"] == 1005:
            break
    limited = answers[-1]
    assert limited == {"code": 1005, "msg": "requests are being made too frequently", "data": None}
    counters = stats(sim)
    assert counters["rate_limited"] == 1
    assert counters["polls"] == len(answers) - 1


def test_a_rate_limited_submit_creates_no_job(sim: Simulator, session: requests.Session) -> None:
    set_rate_limit(sim, 1)
    codes = []
    for _ in range(20):
        codes.append(submit(sim, session, "https://x.invalid/v.mp4").json()["code"])
        if codes[-1] == 1005:
            break
    assert codes[-1] == 1005
    assert len(sim.state.jobs) == len(codes) - 1


def test_rate_limit_0_or_null_turns_it_off_and_a_bad_value_is_refused(
    sim: Simulator, session: requests.Session
) -> None:
    job_id = submit_ok(sim, session, "https://x.invalid/v.mp4")
    for off in (0, None):
        set_rate_limit(sim, 1)
        assert set_rate_limit(sim, off).json() == {"per_second": None}
        assert all(poll(sim, session, job_id).json()["code"] == 1000 for _ in range(5))
    for bad in (-1, "5", True, 1.5):
        assert set_rate_limit(sim, bad).status_code == 400
    assert stats(sim)["rate_limited"] == 0


def test_reset_turns_the_rate_limit_off_and_clears_its_counters(sim: Simulator) -> None:
    sim.state.set_rate_limit(1)
    sim.state.clock = lambda: 50.0
    sim.state.note_api_request()
    assert [sim.state.over_rate_limit() for _ in range(2)] == [False, True]
    requests.post(sim.base_url + "/_sim/reset", timeout=TIMEOUT)
    assert sim.state.rate_limit is None
    assert (stats(sim)["rate_limited"], stats(sim)["max_requests_per_second"]) == (0, 0)


def test_the_rate_limit_counts_whole_seconds_and_refuses_only_the_excess(sim: Simulator) -> None:
    state = sim.state
    state.set_rate_limit(2)
    now = [100.1]
    state.clock = lambda: now[0]
    assert [state.over_rate_limit() for _ in range(4)] == [False, False, True, True]
    now[0] = 101.0
    assert [state.over_rate_limit() for _ in range(3)] == [False, False, True]
    assert state.stats()["rate_limited"] == 3


def test_max_requests_per_second_is_the_peak_of_any_sliding_one_second_window(
    sim: Simulator,
) -> None:
    state = sim.state
    now = [0.0]
    state.clock = lambda: now[0]
    # Two requests either side of a whole second: aligned windows would see 2, the peak is 4.
    for moment in (0.5, 0.9, 1.1, 1.4, 2.6):
        now[0] = moment
        state.note_api_request()
    assert state.stats()["max_requests_per_second"] == 4


def test_every_akool_endpoint_request_counts_towards_the_peak_rate(
    sim: Simulator, session: requests.Session
) -> None:
    sim.state.clock = lambda: 7.0
    body = {"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET}
    requests.post(sim.base_url + TOKEN, json=body, timeout=TIMEOUT)
    job_id = submit_ok(sim, session, "https://x.invalid/v.mp4")
    poll(sim, session, job_id)
    stats(sim)
    job_info(sim, job_id)
    assert stats(sim)["max_requests_per_second"] == 3


# --- webhook callbacks ------------------------------------------------------------------------

HOOK_CLIENT_ID = "hook-client"  # shorter than 16 bytes: the IV is padded with spaces
HOOK_SECRET = "0123456789abcdef"


@pytest.fixture
def hook() -> Iterator[tuple[str, type[PostSink]]]:
    with post_sink("/webhooks/akool") as sink:
        yield sink


@pytest.fixture
def hook_sim() -> Iterator[Simulator]:
    config = SimulatorConfig(
        api_key=API_KEY, client_id=HOOK_CLIENT_ID, client_secret=HOOK_SECRET, default_size=SMALL
    )
    simulator = Simulator(config, host="127.0.0.1", port=0).start()
    yield simulator
    simulator.stop()


def callbacks_of(handler: type[PostSink], count: int) -> list[dict[str, Any]]:
    """The first `count` decrypted callback payloads, after checking each signature."""
    wait_until(lambda: len(handler.bodies) >= count, 10, f"{count} callbacks")
    payloads = []
    for body in handler.bodies[:count]:
        expected = sign(HOOK_CLIENT_ID, body["timestamp"], body["nonce"], body["dataEncrypt"])
        assert body["signature"] == expected
        payloads.append(decrypt_payload(body["dataEncrypt"], HOOK_CLIENT_ID, HOOK_SECRET))
    return payloads


def test_a_job_with_webhook_url_gets_an_encrypted_signed_completion_callback(
    hook_sim: Simulator, session: requests.Session, hook: tuple[str, type[PostSink]]
) -> None:
    url, handler = hook
    job_id = submit(hook_sim, session, "https://x.invalid/v.mp4", webhookUrl=url).json()["data"][
        "_id"
    ]
    (payload,) = callbacks_of(handler, 1)
    assert payload == {
        "_id": job_id,
        "status": 3,
        "type": "lipsync",
        "url": f"{hook_sim.base_url}/files/{job_id}.mp4?v=1",
    }
    assert abs(handler.bodies[0]["timestamp"] / 1000 - time.time()) < 60
    wait_until(lambda: job_info(hook_sim, job_id)["webhook_answers"] == [200], 5, "answer")


def test_the_callback_announces_completion_while_polls_still_say_processing(
    hook_sim: Simulator, session: requests.Session, hook: tuple[str, type[PostSink]]
) -> None:
    url, handler = hook
    video = "https://x.invalid/v.mp4?sim_polls=1000&sim_seconds=0.2&sim_webhook_progress=1"
    job_id = submit(hook_sim, session, video, webhookUrl=url).json()["data"]["_id"]
    assert [p["status"] for p in callbacks_of(handler, 2)] == [2, 3]
    assert poll(hook_sim, session, job_id).json()["data"]["video_status"] in (1, 2)


def test_a_failed_job_calls_back_with_status_4_and_no_url(
    hook_sim: Simulator, session: requests.Session, hook: tuple[str, type[PostSink]]
) -> None:
    url, handler = hook
    submit(hook_sim, session, "https://x.invalid/v.mp4?sim_final=4", webhookUrl=url)
    (payload,) = callbacks_of(handler, 1)
    assert (payload["status"], payload["url"]) == (4, "")


def test_a_callback_not_answered_200_is_sent_again_until_it_is(
    hook_sim: Simulator, session: requests.Session, hook: tuple[str, type[PostSink]]
) -> None:
    url, handler = hook
    handler.answers.extend([503, 401])
    job_id = submit(hook_sim, session, "https://x.invalid/v.mp4", webhookUrl=url).json()["data"][
        "_id"
    ]
    callbacks_of(handler, 3)
    wait_until(lambda: len(job_info(hook_sim, job_id)["webhook_answers"]) == 3, 5, "answers")
    assert job_info(hook_sim, job_id)["webhook_answers"] == [503, 401, 200]
    assert stats(hook_sim)["webhooks_delivered"] == 1


def test_a_callback_is_tried_a_bounded_number_of_times(
    hook_sim: Simulator, session: requests.Session, hook: tuple[str, type[PostSink]]
) -> None:
    url, handler = hook
    handler.answers.extend([500] * (WEBHOOK_ATTEMPTS + 3))
    job_id = submit(hook_sim, session, "https://x.invalid/v.mp4", webhookUrl=url).json()["data"][
        "_id"
    ]
    wait_until(
        lambda: len(job_info(hook_sim, job_id)["webhook_answers"]) == WEBHOOK_ATTEMPTS,
        20,
        "all tries",
    )
    assert stats(hook_sim)["webhooks_delivered"] == 0
