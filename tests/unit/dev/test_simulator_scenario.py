"""Tests of the simulator's scenarios: the sim_* query parameters of a video_url."""

from __future__ import annotations

from worker.dev.simulator import parse_scenario
from worker.dev.simulator.scenario import within


def test_scenario_is_read_from_sim_query_params_only() -> None:
    scenario = parse_scenario("https://x.invalid/v.mp4?a=1&sim_polls=0&sim_final=4&sim_seconds=1.5")
    assert (scenario.polls, scenario.final, scenario.seconds) == (0, 4, 1.5)
    assert parse_scenario("https://x.invalid/v.mp4").polls == 2


def test_delay_and_retry_after_params_are_read_from_the_video_url() -> None:
    scenario = parse_scenario("https://x.invalid/v.mp4?sim_submit_delay=1.5&sim_retry_after=7")
    assert (scenario.submit_delay, scenario.retry_after) == (1.5, "7")
    assert parse_scenario("https://x.invalid/v.mp4?sim_retry_after=a%0D%0Ab").retry_after is None


def test_webhook_scenario_is_read_from_sim_query_params() -> None:
    scenario = parse_scenario(
        "https://x.invalid/v.mp4?sim_webhook_delay=2.5&sim_webhook=0&sim_webhook_progress=1"
    )
    assert (scenario.webhook_delay, scenario.webhook, scenario.webhook_progress) == (
        2.5,
        False,
        True,
    )
    assert parse_scenario("https://x.invalid/v.mp4").webhook is True


def test_within_counts_the_first_times_events_or_all_of_them_without_a_limit() -> None:
    assert [within(n, 2) for n in (1, 2, 3)] == [True, True, False]
    assert within(1000, None)
