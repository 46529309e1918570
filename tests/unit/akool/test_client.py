"""Tests of AkoolClient against the in-process Akool simulator (real HTTP on 127.0.0.1); with
the request budget in Redis they are in tests/integration/test_akool_budget.py."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.akool.client import (
    AkoolClient,
    AkoolStatus,
    parse_envelope,
    parse_retry_after,
    parse_status,
)
from worker.config.settings import Secret
from worker.dev.simulator import Simulator, SimulatorConfig
from worker.errors import (
    AkoolAuthError,
    AkoolError,
    AkoolPermanentError,
    AkoolRequestNotSent,
    AkoolTransientError,
)

API_KEY = "sim-key-Q7distinctApiKey"
CLIENT_ID = "sim-client-id"
CLIENT_SECRET = "sim-secret-W3distinctClientSecret"
WRONG_KEY = "wrong-key-R5distinctWrongKey"
AUDIO = "https://example.invalid/a.wav"
TIMEOUT = 10
MAX_POLLS = 10


@pytest.fixture
def sim() -> Iterator[Simulator]:
    config = SimulatorConfig(
        api_key=API_KEY, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, default_size=1024
    )
    simulator = Simulator(config, host="127.0.0.1", port=0).start()
    yield simulator
    simulator.stop()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def key_client(sim: Simulator, session: requests.Session, key: str = API_KEY) -> AkoolClient:
    return AkoolClient(sim.base_url, api_key=Secret(key), session=session, timeout=TIMEOUT)


def token_client(
    sim: Simulator, session: requests.Session, secret: str = CLIENT_SECRET
) -> AkoolClient:
    return AkoolClient(
        sim.base_url,
        client_id=CLIENT_ID,
        client_secret=Secret(secret),
        session=session,
        timeout=TIMEOUT,
    )


def sim_stats(sim: Simulator) -> dict[str, Any]:
    result: dict[str, Any] = requests.get(sim.base_url + "/_sim/stats", timeout=TIMEOUT).json()
    return result


def revoke_tokens(sim: Simulator) -> None:
    requests.post(sim.base_url + "/_sim/revoke-tokens", timeout=TIMEOUT).raise_for_status()


def poll_until_final(client: AkoolClient, akool_id: str) -> list[AkoolStatus]:
    seen: list[AkoolStatus] = []
    for _ in range(MAX_POLLS):
        status = client.status(akool_id)
        seen.append(status)
        if status.done or status.failed:
            return seen
    raise AssertionError(f"job not final after {MAX_POLLS} polls: {seen}")


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_no_secret(*texts: object) -> None:
    for text in texts:
        for secret in (API_KEY, CLIENT_SECRET, WRONG_KEY):
            assert secret not in str(text)


def assert_error_has_no_secret(error: AkoolError) -> None:
    assert_no_secret(str(error), repr(error), error.url, error.args)


# --- the happy path --------------------------------------------------------------------------


def test_a_submitted_job_is_polled_from_queued_to_completed_with_a_video_url(
    sim: Simulator, session: requests.Session
) -> None:
    client = key_client(sim, session)
    akool_id = client.submit("https://example.invalid/v.mp4?sim_polls=2", AUDIO)
    assert isinstance(akool_id, str) and akool_id
    seen = poll_until_final(client, akool_id)
    statuses = [s.status for s in seen]
    assert statuses[-1] == 3
    assert set(statuses[:-1]) <= {1, 2}
    assert statuses == sorted(statuses)
    assert all(s.akool_id == akool_id for s in seen)
    assert seen[-1].video_url is not None
    assert f"/files/{akool_id}.mp4?v=" in seen[-1].video_url


def test_a_job_akool_fails_is_reported_as_failed(sim: Simulator, session: requests.Session) -> None:
    client = key_client(sim, session)
    akool_id = client.submit("https://example.invalid/v.mp4?sim_polls=1&sim_final=4", AUDIO)
    final = poll_until_final(client, akool_id)[-1]
    assert final.failed
    assert final.video_url is None


def test_api_key_auth_sends_no_token_request(sim: Simulator, session: requests.Session) -> None:
    client = key_client(sim, session)
    client.status(client.submit("https://example.invalid/v.mp4", AUDIO))
    stats = sim_stats(sim)
    assert stats["token_requests"] == 0
    assert stats["submits"] == 1


def test_the_webhook_url_is_passed_to_akool(sim: Simulator, session: requests.Session) -> None:
    client = key_client(sim, session)
    akool_id = client.submit("https://example.invalid/v.mp4", AUDIO, "https://hooks.example/cb")
    info = requests.get(f"{sim.base_url}/_sim/jobs/{akool_id}", timeout=TIMEOUT).json()
    assert info["webhookUrl"] == "https://hooks.example/cb"
    assert info["audio_url"] == AUDIO


# --- client credentials -----------------------------------------------------------------------


def test_client_credentials_fetch_one_token_and_reuse_it(
    sim: Simulator, session: requests.Session
) -> None:
    client = token_client(sim, session)
    akool_id = client.submit("https://example.invalid/v.mp4?sim_polls=2", AUDIO)
    poll_until_final(client, akool_id)
    client.submit("https://example.invalid/other.mp4", AUDIO)
    stats = sim_stats(sim)
    assert stats["token_requests"] == 1
    assert stats["submits"] == 2
    assert stats["polls"] >= 3


def test_a_revoked_token_is_replaced_once_and_the_call_succeeds(
    sim: Simulator, session: requests.Session
) -> None:
    client = token_client(sim, session)
    akool_id = client.submit("https://example.invalid/v.mp4", AUDIO)
    assert sim_stats(sim)["token_requests"] == 1
    revoke_tokens(sim)
    assert client.status(akool_id).status in (1, 2, 3)
    assert sim_stats(sim)["token_requests"] == 2
    client.status(akool_id)
    assert sim_stats(sim)["token_requests"] == 2


def test_a_wrong_client_secret_is_an_auth_error_without_the_secret(
    sim: Simulator, session: requests.Session
) -> None:
    client = token_client(sim, session, secret=WRONG_KEY)
    with pytest.raises(AkoolAuthError) as info:
        client.submit("https://example.invalid/v.mp4", AUDIO)
    assert info.value.code == 1101
    assert_error_has_no_secret(info.value)
    assert sim_stats(sim)["submits"] == 0


# --- errors ----------------------------------------------------------------------------------


def test_a_wrong_api_key_is_an_auth_error_with_code_1101(
    sim: Simulator, session: requests.Session
) -> None:
    client = key_client(sim, session, key=WRONG_KEY)
    with pytest.raises(AkoolAuthError) as info:
        client.submit("https://example.invalid/v.mp4", AUDIO)
    assert info.value.code == 1101
    assert isinstance(info.value, AkoolPermanentError)
    assert "1101" in str(info.value)
    assert_error_has_no_secret(info.value)


def test_a_submit_answered_with_502_is_transient_with_its_status(
    sim: Simulator, session: requests.Session
) -> None:
    client = key_client(sim, session)
    with pytest.raises(AkoolTransientError) as info:
        client.submit("https://example.invalid/v.mp4?sim_submit_http=502", AUDIO)
    assert info.value.status == 502
    assert not isinstance(info.value, AkoolRequestNotSent)
    assert_error_has_no_secret(info.value)


def test_a_submit_refused_with_a_business_code_carries_the_code(
    sim: Simulator, session: requests.Session
) -> None:
    client = key_client(sim, session)
    with pytest.raises(AkoolTransientError) as transient:
        client.submit("https://example.invalid/v.mp4?sim_submit_code=1005", AUDIO)
    assert transient.value.code == 1005
    with pytest.raises(AkoolPermanentError) as permanent:
        client.submit("https://example.invalid/v.mp4?sim_submit_code=1204", AUDIO)
    assert permanent.value.code == 1204


def test_polling_an_unknown_job_is_permanent_code_1008(
    sim: Simulator, session: requests.Session
) -> None:
    with pytest.raises(AkoolPermanentError) as info:
        key_client(sim, session).status("no-such-job")
    assert info.value.code == 1008


def test_a_closed_port_means_the_request_was_not_sent(session: requests.Session) -> None:
    client = AkoolClient(
        f"http://127.0.0.1:{closed_port()}", api_key=Secret(API_KEY), session=session, timeout=5
    )
    with pytest.raises(AkoolRequestNotSent) as info:
        client.submit("https://example.invalid/v.mp4", AUDIO)
    assert isinstance(info.value, AkoolTransientError)
    assert_error_has_no_secret(info.value)


def test_a_client_needs_an_api_key_or_a_client_pair() -> None:
    with pytest.raises(ValueError):
        AkoolClient("http://127.0.0.1:1")
    with pytest.raises(ValueError):
        AkoolClient("http://127.0.0.1:1", client_id=CLIENT_ID)


def test_the_client_repr_shows_no_secret_or_token(
    sim: Simulator, session: requests.Session
) -> None:
    keyed = key_client(sim, session)
    tokened = token_client(sim, session)
    tokened.submit("https://example.invalid/v.mp4", AUDIO)
    tokens = list(sim.state.tokens)
    assert tokens
    for client in (keyed, tokened):
        assert_no_secret(repr(client), str(client))
        for token in tokens:
            assert token not in repr(client)
    assert sim.base_url in repr(keyed)


# --- Retry-After -----------------------------------------------------------------------------


@pytest.mark.parametrize(("http_status", "header"), [(429, "7"), (503, "2.5")])
def test_retry_after_seconds_on_a_429_or_503_are_carried_in_retry_after(
    sim: Simulator, session: requests.Session, http_status: int, header: str
) -> None:
    client = key_client(sim, session)
    url = f"https://example.invalid/v.mp4?sim_poll_http={http_status}&sim_retry_after={header}"
    akool_id = client.submit(url, AUDIO)
    with pytest.raises(AkoolTransientError) as info:
        client.status(akool_id)
    assert info.value.status == http_status
    assert info.value.retry_after == float(header)


def test_retry_after_on_a_submit_answered_429_is_carried_too(
    sim: Simulator, session: requests.Session
) -> None:
    client = key_client(sim, session)
    with pytest.raises(AkoolTransientError) as info:
        client.submit("https://example.invalid/v.mp4?sim_submit_http=429&sim_retry_after=3", AUDIO)
    assert (info.value.status, info.value.retry_after) == (429, 3.0)


def test_retry_after_is_ignored_on_other_statuses_and_absent_without_the_header(
    sim: Simulator, session: requests.Session
) -> None:
    client = key_client(sim, session)
    akool_id = client.submit(
        "https://example.invalid/v.mp4?sim_poll_http=502&sim_retry_after=9", AUDIO
    )
    with pytest.raises(AkoolTransientError) as on_502:
        client.status(akool_id)
    assert on_502.value.retry_after is None
    akool_id = client.submit("https://example.invalid/v.mp4?sim_poll_http=429", AUDIO)
    with pytest.raises(AkoolTransientError) as bare:
        client.status(akool_id)
    assert bare.value.retry_after is None


def test_code_1005_carries_no_retry_after(sim: Simulator, session: requests.Session) -> None:
    client = key_client(sim, session)
    with pytest.raises(AkoolTransientError) as info:
        client.submit("https://example.invalid/v.mp4?sim_submit_code=1005", AUDIO)
    assert (info.value.code, info.value.retry_after) == (1005, None)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        ("120", 120.0),
        (" 1.5 ", 1.5),
        ("601", 600.0),
        ("99999999", 600.0),
        (None, None),
        ("", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ("-5", None),
        ("1e3", None),
        ("inf", None),
        ("nan", None),
        ("1_0", None),
        ("\u0661", None),
        ("soon", None),
    ],
)
def test_retry_after_takes_only_delay_seconds_capped_at_600(
    header: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(header) == seconds


# --- properties ------------------------------------------------------------------------------

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_value = st.recursive(
    json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.text(max_size=10), children, max_size=4),
    ),
    max_leaves=12,
)
code_value = st.one_of(json_value, st.integers(), st.just(1000))
envelope_like = st.fixed_dictionaries(
    {"code": code_value},
    optional={"msg": json_value, "data": json_value, "token": json_value},
)
status_value = st.one_of(
    json_value,
    st.integers(min_value=-2, max_value=6),
    st.integers(min_value=-2, max_value=6).map(str),
)
status_like = st.fixed_dictionaries(
    {"video_status": status_value}, optional={"video": json_value, "_id": json_value}
)
PROPERTY = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def check_envelope(http_status: int, body: bytes) -> None:
    try:
        result = parse_envelope(http_status, body, "http://127.0.0.1/x")
    except AkoolError:
        return
    assert isinstance(result, dict)
    assert isinstance(result["code"], int)
    assert not isinstance(result["code"], bool)


@PROPERTY
@given(http_status=st.integers(200, 299), body=st.binary(max_size=200))
def test_parse_envelope_turns_any_bytes_into_an_envelope_or_an_akool_error(
    http_status: int, body: bytes
) -> None:
    check_envelope(http_status, body)


@PROPERTY
@given(
    http_status=st.one_of(st.just(200), st.integers(100, 599)),
    value=st.one_of(json_value, envelope_like),
)
def test_parse_envelope_turns_any_json_into_an_envelope_or_an_akool_error(
    http_status: int, value: Any
) -> None:
    check_envelope(http_status, json.dumps(value).encode())


@PROPERTY
@given(data=st.one_of(json_value, status_like))
def test_parse_status_turns_any_json_into_a_status_or_an_akool_error(data: Any) -> None:
    try:
        result = parse_status("x", data, "http://127.0.0.1/x")
    except AkoolError:
        return
    assert isinstance(result, AkoolStatus)
    assert result.status in (1, 2, 3, 4)
    assert result.akool_id == "x"
    if result.done:
        assert isinstance(result.video_url, str) and result.video_url.strip()
