"""The operator files, read by the tools that use them: docker-compose.yml by docker-compose
(v1 validates a file without a Docker daemon), config/alerts.yml by promtool (its syntax, and
promtool's rule tests: each alert fires on the fleet it is about, and not on a healthy one),
and the Grafana dashboard's queries by promtool's PromQL parser.

`make test` installs both tools (Debian: docker-compose, prometheus). Elsewhere a missing
tool skips its tests with the reason; with CI=true it fails them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOOL_TIMEOUT_SECONDS = 60
FLOWER_LOGIN = "ops:not-a-real-password"
# Two processes serve the same fleet-wide numbers (the web process and a worker with
# METRICS_PORT): every input series is scraped from both, so a rule that adds them up fails.
SCRAPED_FROM = ('instance="web:8000", job="lipsync"', 'instance="worker:9100", job="lipsync"')

pytestmark = pytest.mark.integration


def tool(name: str, package: str) -> str:
    """The tool's path; skip (fail under CI) when it is not installed."""
    path = shutil.which(name)
    if path:
        return path
    hint = f"{name} is not installed (Debian: apt-get install {package}; `make test` installs it)"
    if os.environ.get("CI", "").lower() in {"true", "1"}:
        pytest.fail(hint)
    pytest.skip(hint)


def run(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TOOL_TIMEOUT_SECONDS
    )


# docker-compose


def compose_env() -> dict[str, str]:
    """This environment without what would change how compose reads the project."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("COMPOSE_", "DOCKER_")) and k != "FLOWER_BASIC_AUTH"
    }


def compose_project(tmp_path: Path, *, flower_login: str) -> Path:
    """A copy of the compose file and config/, with a .env made from .env.example."""
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    shutil.copytree(ROOT / "config", tmp_path / "config")
    example = (ROOT / ".env.example").read_text()
    env, count = re.subn(
        r"^FLOWER_BASIC_AUTH=.*$", f"FLOWER_BASIC_AUTH={flower_login}", example, flags=re.M
    )
    assert count == 1
    (tmp_path / ".env").write_text(env)
    return tmp_path


def test_docker_compose_accepts_the_compose_file_with_a_dot_env_from_the_example(
    tmp_path: Path,
) -> None:
    compose = tool("docker-compose", "docker-compose")
    project = compose_project(tmp_path, flower_login=FLOWER_LOGIN)
    done = run([compose, "-f", "docker-compose.yml", "config", "-q"], project, compose_env())
    assert done.returncode == 0, done.stderr


def test_docker_compose_refuses_the_stack_while_flower_basic_auth_is_empty(
    tmp_path: Path,
) -> None:
    compose = tool("docker-compose", "docker-compose")
    project = compose_project(tmp_path, flower_login="")
    done = run([compose, "-f", "docker-compose.yml", "config", "-q"], project, compose_env())
    assert done.returncode != 0
    assert "set FLOWER_BASIC_AUTH" in done.stderr, done.stderr


def test_docker_compose_resolves_ports_limits_and_flower_login_as_intended(
    tmp_path: Path,
) -> None:
    compose = tool("docker-compose", "docker-compose")
    project = compose_project(tmp_path, flower_login=FLOWER_LOGIN)
    done = run([compose, "-f", "docker-compose.yml", "config"], project, compose_env())
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    for name, service in services.items():
        for port in service.get("ports", []):
            if name == "web":  # on every interface: Akool calls it
                assert not isinstance(port, str) or port.count(":") == 1, port
                assert not isinstance(port, dict) or not port.get("host_ip"), port
            else:
                assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == FLOWER_LOGIN
    assert services["worker-akool"]["mem_limit"] and services["worker-archive"]["mem_limit"]
    for name in ("worker-akool", "worker-archive", "beat"):
        assert services[name]["stop_grace_period"] == "60s", name


# promtool


def test_promtool_accepts_the_alert_rules() -> None:
    promtool = tool("promtool", "prometheus")
    done = run([promtool, "check", "rules", "config/alerts.yml"], ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def scraped(series: str, values: str) -> list[dict[str, str]]:
    """One series as both processes serve it."""
    name, _, labels = series.partition("{")
    labels = labels.rstrip("}")
    return [
        {"series": f"{name}{{{', '.join(x for x in (labels, where) if x)}}}", "values": values}
        for where in SCRAPED_FROM
    ]


def actions() -> dict[str, str]:
    groups = yaml.safe_load((ROOT / "config" / "alerts.yml").read_text())["groups"]
    return {r["alert"]: r["annotations"]["action"] for g in groups for r in g["rules"]}


def fires(
    alert: str, at: str, summary: str, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    """An alert_rule_test: `alert` fires at `at` with this summary."""
    expected = {
        "exp_labels": {"severity": SEVERITY[alert], **(labels or {})},
        "exp_annotations": {"summary": summary, "action": actions()[alert]},
    }
    return {"eval_time": at, "alertname": alert, "exp_alerts": [expected]}


def quiet(alert: str, at: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": []}


SEVERITY = {
    "LipsyncJobsAtRisk": "critical",
    "LipsyncAkoolUnreachable": "critical",
    "LipsyncFinishedVideoFileMissing": "warning",
    "LipsyncArchiveBehind": "warning",
    "LipsyncArchiveStalled": "critical",
    "LipsyncAkoolRejectsCredentials": "critical",
    "LipsyncAkoolRateLimited": "warning",
    "LipsyncAkoolErrors": "warning",
    "LipsyncJobsFailing": "warning",
    "LipsyncQueueBacklog": "warning",
    "LipsyncMetricsMissing": "critical",
}
CALLS = "lipsync_akool_calls_total"
# A fleet with nothing wrong: jobs flow, every Akool call succeeds, queues are short.
HEALTHY = [
    *scraped("lipsync_jobs_at_risk", "0x90"),
    *scraped("lipsync_oldest_unarchived_finished_video_age_seconds", "30x90"),
    *scraped('lipsync_jobs{status="archiving"}', "2x90"),
    *scraped('lipsync_jobs{status="failed"}', "3x90"),
    *scraped('lipsync_jobs{status="archived"}', "0+5x90"),
    *scraped("lipsync_archive_bytes_total", "0+50000000x90"),
    *scraped(f'{CALLS}{{endpoint="status", outcome="ok"}}', "0+300x90"),
    *scraped(f'{CALLS}{{endpoint="submit", outcome="ok"}}', "0+5x90"),
    *scraped('lipsync_queue_length{queue="lipsync.akool"}', "3x90"),
    *scraped('lipsync_queue_length{queue="lipsync.archive"}', "1x90"),
    # Passing faults: a job waits on Akool for a minute now and then, none on a file.
    *scraped('lipsync_jobs_waiting_oldest_seconds{on="akool"}', "0 60 0x88"),
    *scraped('lipsync_jobs_waiting{on="file"}', "0x90"),
]
RULE_TESTS: list[dict[str, Any]] = [
    {"input_series": HEALTHY, "alert_rule_test": [quiet(alert, "90m") for alert in SEVERITY]},
    {
        "input_series": scraped("lipsync_jobs_at_risk", "0 0 2x30"),
        "alert_rule_test": [
            quiet("LipsyncJobsAtRisk", "5m"),
            fires(
                "LipsyncJobsAtRisk",
                "10m",
                "2 finished video(s) not archived that Akool deletes within 24 h",
            ),
        ],
    },
    {
        # One job waits on Akool from 0m: past 10 minutes at 11m, alerting a minute later.
        "input_series": scraped('lipsync_jobs_waiting_oldest_seconds{on="akool"}', "0+60x30"),
        "alert_rule_test": [
            quiet("LipsyncAkoolUnreachable", "10m"),
            fires(
                "LipsyncAkoolUnreachable",
                "13m",
                "A job has waited 13m 0s on Akool, which gives no usable answer",
            ),
        ],
    },
    {
        # A CDN's 404 for two minutes is no alert; five minutes of it is.
        "input_series": scraped('lipsync_jobs_waiting{on="file"}', "0 1 1 0x3 2x20"),
        "alert_rule_test": [
            quiet("LipsyncFinishedVideoFileMissing", "4m"),
            quiet("LipsyncFinishedVideoFileMissing", "9m"),
            fires(
                "LipsyncFinishedVideoFileMissing",
                "12m",
                "2 finished video(s) whose file host answers that the file is gone",
            ),
        ],
    },
    {
        # Two minutes older every minute: past an hour at 30m, alerting 10 minutes later.
        "input_series": scraped("lipsync_oldest_unarchived_finished_video_age_seconds", "0+120x60"),
        "alert_rule_test": [
            quiet("LipsyncArchiveBehind", "35m"),
            fires(
                "LipsyncArchiveBehind",
                "45m",
                "A video Akool finished 1h 30m 0s ago is not archived yet",
            ),
        ],
    },
    {
        "input_series": [
            *scraped("lipsync_archive_bytes_total", "0+1000000x10 10000000x30"),
            *scraped('lipsync_jobs{status="archiving"}', "3x40"),
        ],
        "alert_rule_test": [
            quiet("LipsyncArchiveStalled", "20m"),
            fires(
                "LipsyncArchiveStalled",
                "36m",
                "Jobs are waiting to be archived but no byte reached S3 for 25 minutes",
            ),
        ],
    },
    {
        # Only the queue says so: no job record is archiving yet.
        "input_series": [
            *scraped("lipsync_archive_bytes_total", "5x40"),
            *scraped('lipsync_queue_length{queue="lipsync.archive"}', "4x40"),
        ],
        "alert_rule_test": [
            fires(
                "LipsyncArchiveStalled",
                "30m",
                "Jobs are waiting to be archived but no byte reached S3 for 25 minutes",
            )
        ],
    },
    {
        "input_series": [
            *scraped(f'{CALLS}{{endpoint="submit", outcome="code_1101"}}', "0+5x30"),
            *scraped(f'{CALLS}{{endpoint="status", outcome="ok"}}', "0+100x30"),
        ],
        "alert_rule_test": [
            fires(
                "LipsyncAkoolRejectsCredentials",
                "20m",
                "Akool answers code_1101: credentials, credit or quota",
                {"outcome": "code_1101"},
            )
        ],
    },
    {
        # 10% of calls refused as too frequent; a tenth of the calls fail.
        "input_series": [
            *scraped(f'{CALLS}{{endpoint="status", outcome="code_1005"}}', "0+10x40"),
            *scraped(f'{CALLS}{{endpoint="status", outcome="ok"}}', "0+90x40"),
        ],
        "alert_rule_test": [
            quiet("LipsyncAkoolRateLimited", "10m"),
            fires(
                "LipsyncAkoolRateLimited",
                "25m",
                "10% of Akool calls are refused as too frequent (1005)",
            ),
            quiet("LipsyncAkoolErrors", "25m"),
        ],
    },
    {
        "input_series": [
            *scraped(f'{CALLS}{{endpoint="status", outcome="http_502"}}', "0+20x40"),
            *scraped(f'{CALLS}{{endpoint="status", outcome="network"}}', "0+10x40"),
            *scraped(f'{CALLS}{{endpoint="status", outcome="ok"}}', "0+70x40"),
        ],
        "alert_rule_test": [
            fires("LipsyncAkoolErrors", "25m", "30% of Akool calls fail"),
            quiet("LipsyncAkoolRateLimited", "25m"),
        ],
    },
    {
        # One more failed job a minute.
        "input_series": scraped('lipsync_jobs{status="failed"}', "0+1x120"),
        "alert_rule_test": [
            quiet("LipsyncJobsFailing", "20m"),
            fires("LipsyncJobsFailing", "90m", "60 more failed jobs within the last hour"),
        ],
    },
    {
        "input_series": [
            *scraped('lipsync_queue_length{queue="lipsync.archive"}', "600x30"),
            *scraped('lipsync_queue_length{queue="lipsync.akool"}', "10x30"),
        ],
        "alert_rule_test": [
            fires(
                "LipsyncQueueBacklog",
                "20m",
                "600 tasks waiting in lipsync.archive",
                {"queue": "lipsync.archive"},
            )
        ],
    },
    {
        "input_series": [{"series": 'up{job="lipsync"}', "values": "0x20"}],
        "alert_rule_test": [
            quiet("LipsyncMetricsMissing", "5m"),
            fires("LipsyncMetricsMissing", "15m", "No lipsync metrics scraped for 10 minutes"),
        ],
    },
]


def test_every_alert_fires_on_what_it_is_about_and_none_on_a_healthy_fleet(
    tmp_path: Path,
) -> None:
    promtool = tool("promtool", "prometheus")
    assert set(SEVERITY) == set(actions()), "each alert needs its promtool tests here"
    tests = [{"interval": "1m", **test} for test in RULE_TESTS]
    spec = {
        "rule_files": [str(ROOT / "config" / "alerts.yml")],
        "evaluation_interval": "1m",
        "tests": tests,
    }
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(spec, sort_keys=False))
    done = run([promtool, "test", "rules", "alerts_test.yml"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Each query as a recording rule, so promtool's PromQL parser reads it."""
    promtool = tool("promtool", "prometheus")
    dashboard = json.loads((ROOT / "config" / "grafana-dashboard.json").read_text())
    rules = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            expr = re.sub(r"\$__(rate_interval|interval|range)", "5m", target["expr"])
            rules.append(
                {"record": f"dashboard:panel_{panel['id']}_{target['refId']}", "expr": expr}
            )
    assert rules
    (tmp_path / "dashboard_rules.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    done = run([promtool, "check", "rules", "dashboard_rules.yml"], tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
