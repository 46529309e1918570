"""docker-compose.yml, the Procfile, .env.example, the settings and the README must agree.

Docker cannot run here, so these checks are what keeps the deployment files from drifting.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.names import QUEUES

ROOT = Path(__file__).resolve().parents[2]
APP_SERVICES = ("worker-akool", "worker-archive", "beat", "web", "flower")
# boto3's own variables and the web port are read by libraries or platforms, not settings.py.
EXTERNAL_VARIABLES = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {k.strip(): shlex.split(v) for k, _, v in (ln.partition(":") for ln in lines) if v}


def settings_variables() -> set[str]:
    """Every environment variable worker/settings.py reads."""
    source = (ROOT / "worker" / "settings.py").read_text()
    return set(re.findall(r'env(?:\.get\(|, )"([A-Z][A-Z0-9_]+)"', source))


def option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def without_option(argv: list[str], flag: str) -> list[str]:
    """`argv` without `flag` and its value."""
    at = argv.index(flag)
    return argv[:at] + argv[at + 2 :]


def test_procfile_has_worker_beat_and_web(procfile: dict[str, list[str]]) -> None:
    assert set(procfile) >= {"worker", "beat", "web"}


def test_procfile_worker_consumes_every_queue_the_project_uses(
    procfile: dict[str, list[str]],
) -> None:
    assert set(option(procfile["worker"], "-Q").split(",")) == set(QUEUES)


def test_compose_workers_together_consume_the_procfile_queues(
    compose: dict[str, Any], procfile: dict[str, list[str]]
) -> None:
    services = compose["services"]
    queues = {
        q
        for name in ("worker-akool", "worker-archive")
        for q in option(services[name]["command"], "-Q").split(",")
    }
    assert queues == set(option(procfile["worker"], "-Q").split(",")) == set(QUEUES)
    assert services["worker-akool"]["command"][:4] == procfile["worker"][:4]


def test_compose_beat_and_web_run_the_procfile_commands(
    compose: dict[str, Any], procfile: dict[str, list[str]]
) -> None:
    services = compose["services"]
    # The schedule file differs on purpose: per checkout locally, /tmp in the image.
    assert without_option(services["beat"]["command"], "--schedule") == without_option(
        procfile["beat"], "--schedule"
    )
    assert services["web"]["command"] == procfile["web"]


def test_compose_redis_keeps_data_and_never_evicts(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    mounted = {v.split(":")[1] for v in redis["volumes"] if v.startswith("./config/redis.conf:")}
    assert redis["command"][-1] in mounted
    settings = dict(
        line.split(None, 1)
        for line in (ROOT / "config" / "redis.conf").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    assert settings["appendonly"] == "yes"
    assert settings["maxmemory-policy"] == "noeviction"


def test_every_long_running_service_has_a_health_check(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if name != "minio-init":
            assert "healthcheck" in service, name


def test_app_services_share_one_image_and_read_dot_env(compose: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        service = compose["services"][name]
        assert service["image"] == "lipsync-worker:latest", name
        assert service["env_file"] == [".env"], name
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0", name


def test_compose_and_env_example_only_name_real_settings(compose: dict[str, Any]) -> None:
    known = settings_variables() | EXTERNAL_VARIABLES | {"PORT"}
    named = set()
    for name in APP_SERVICES:
        named |= set(compose["services"][name]["environment"])
    example = (ROOT / ".env.example").read_text()
    named |= set(re.findall(r"^([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    assert named <= known, named - known


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    missing = {name for name in settings_variables() if f"`{name}`" not in readme}
    assert not missing, f"README's configuration table lacks {sorted(missing)}"


def test_honcho_accepts_the_procfile() -> None:
    import subprocess
    import sys

    honcho = Path(sys.executable).parent / "honcho"
    done = subprocess.run(
        [str(honcho), "check"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "worker, beat, web" in done.stderr + done.stdout
