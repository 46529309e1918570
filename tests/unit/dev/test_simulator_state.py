"""Tests of the simulator's shared state and its jobs (SimJob), without HTTP."""

from __future__ import annotations

from worker.dev.simulator import SimJob, SimState, SimulatorConfig


def test_create_job_stores_a_sim_job_scripted_by_its_video_url() -> None:
    state = SimState(SimulatorConfig(default_size=1000))
    url = "https://x.invalid/v.mp4?sim_polls=1&sim_final=4"
    job = state.create_job(url, "https://x.invalid/a.wav", None)
    assert isinstance(job, SimJob)
    assert state.get_job(job.job_id) is job
    assert (job.size, job.scenario.final) == (1000, 4)
    assert state.stats()["jobs_by_video_url"] == {url: 1}


def test_a_sim_job_answers_1_then_2_until_its_polls_are_used_then_its_final_status() -> None:
    state = SimState(SimulatorConfig())
    job = state.create_job("https://x.invalid/v.mp4?sim_polls=3", "https://x.invalid/a.wav", None)
    assert [job.status_for(n) for n in range(5)] == [1, 1, 2, 2, 3]
