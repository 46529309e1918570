"""docker-compose.yml, the Procfile, .env.example, the settings and the docs must agree;
the Dockerfile and the Makefile install from the lock files, which satisfy pyproject.toml;
the operator files in config/ (alert rules, Grafana dashboard) name only exported metrics.

Docker cannot run here, so these checks are what keeps the deployment files from drifting.
tests/integration/test_operator_files.py runs the tools that read them (docker-compose,
promtool).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from worker.names import AKOOL_QUEUE, ARCHIVE_QUEUE, QUEUES

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
APP_SERVICES = ("worker-akool", "worker-archive", "beat", "web", "flower")
# boto3's own variables and the web port are read by libraries or platforms, not settings.py;
# FLOWER_BASIC_AUTH by Flower (its --basic-auth option).
EXTERNAL_VARIABLES = {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "FLOWER_BASIC_AUTH",
}
# Which extras each lock holds besides the runtime dependencies.
LOCKS = {
    "requirements.lock": (),
    "requirements-dev.lock": ("dev", "demo"),
    "requirements-flower.lock": ("flower",),
}
# A worker exits within 30 s of SIGTERM (Celery's shutdown settings); compose must wait longer.
WORKER_SHUTDOWN_SECONDS = 30
# bench/RESULTS.md: a worker process is about 60 MiB at idle; an archive copy adds up to
# 64 MiB of buffers; the Akool worker's main process holds the waiting polls (~12 KiB each):
# room for at least ~10,000 of them.
MIB = 1024 * 1024
PROCESS_MIB = 60
ARCHIVE_BUFFERS_MIB = 64
WAITING_POLLS_MIB = 128
# What docs/operations.md says to alert on, each named by at least one rule.
ALERTED_METRICS = {
    "lipsync_jobs_at_risk",
    "lipsync_oldest_unarchived_finished_video_age_seconds",
    "lipsync_akool_calls_total",
    "lipsync_jobs",
    "lipsync_archive_bytes_total",
    "lipsync_queue_length",
}
DASHBOARD_METRICS = {
    "lipsync_jobs",
    "lipsync_akool_calls_total",
    "lipsync_archive_bytes_total",
    "lipsync_archive_seconds_total",
    "lipsync_completion_to_archived_seconds_bucket",
    "lipsync_queue_length",
    "lipsync_jobs_at_risk",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def procfile() -> dict[str, list[str]]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return {k.strip(): shlex.split(v) for k, _, v in (ln.partition(":") for ln in lines) if v}


def settings_variables() -> set[str]:
    """Every environment variable worker/config/settings.py reads."""
    source = (ROOT / "worker" / "config" / "settings.py").read_text()
    return set(re.findall(r'env(?:\.get\(|, )"([A-Z][A-Z0-9_]+)"', source))


def without_env(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """A Procfile command's `env NAME=value ...` prefix as a dict, and the command after it."""
    if argv[:1] != ["env"]:
        return {}, argv
    assignments = [arg for arg in argv[1:] if re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", arg)]
    rest = argv[1 + len(assignments) :]
    return dict(arg.split("=", 1) for arg in assignments), rest


def image_env() -> dict[str, str]:
    """The variables the Dockerfile's ENV lines set (NAME=value form)."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV\s+(.*)$", text, re.MULTILINE):
        env.update(arg.split("=", 1) for arg in shlex.split(line))
    return env


def option(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def without_option(argv: list[str], flag: str) -> list[str]:
    """`argv` without `flag` and its value."""
    at = argv.index(flag)
    return argv[:at] + argv[at + 2 :]


def seconds(duration: str) -> float:
    """A compose duration ("60s", "1m30s", "1h") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def megabytes(size: str) -> float:
    """A compose byte size ("512m", "1g", "768M") in MiB."""
    match = re.fullmatch(r"(\d+)([bkmg])", size.lower())
    assert match, size
    return int(match[1]) * {"b": 1 / MIB, "k": 1 / 1024, "m": 1, "g": 1024}[match[2]]


def lock_pins(name: str) -> dict[str, str]:
    """The versions a lock file pins, by normalized package name."""
    pins = {}
    for line in (ROOT / name).read_text().splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            package, sep, version = line.split()[0].partition("==")
            assert sep, f"{name}: {line!r} is not pinned with =="
            pins[canonicalize_name(package)] = version
    return pins


def exported_metrics() -> set[str]:
    """The series names worker/metrics.py exports (a counter gets _total, a histogram its
    _bucket, _sum and _count)."""
    source = (ROOT / "worker" / "metrics.py").read_text()
    suffixes = {"Counter": ["_total"], "Gauge": [""], "Histogram": ["_bucket", "_sum", "_count"]}
    found = re.findall(r'(Counter|Gauge|Histogram)MetricFamily\(\s*"(lipsync_\w+)"', source)
    return {name + suffix for kind, name in found for suffix in suffixes[kind]}


def metrics_named(expr: str) -> set[str]:
    """The lipsync_ metric names a PromQL expression reads (label values left out)."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return set(re.findall(r"\blipsync_\w+", without_strings))


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((ROOT / "config" / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_panels() -> list[dict[str, Any]]:
    dashboard = json.loads((ROOT / "config" / "grafana-dashboard.json").read_text())
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # a collapsed row holds its own
    return [panel for panel in panels if panel["type"] != "row"]


# The Procfile's worker lines and the compose services that run the same queues.
WORKER_LINES = {"worker": "worker-akool", "archive": "worker-archive"}


def test_procfile_has_worker_archive_beat_and_web(procfile: dict[str, list[str]]) -> None:
    assert set(procfile) >= {"worker", "archive", "beat", "web"}


def test_procfile_workers_together_consume_every_queue_the_project_uses(
    procfile: dict[str, list[str]],
) -> None:
    queues = [q for line in WORKER_LINES for q in option(procfile[line], "-Q").split(",")]
    assert sorted(queues) == sorted(QUEUES)


def test_archives_never_share_a_pool_with_akool_calls(procfile: dict[str, list[str]]) -> None:
    # A pool full of slow downloads must not hold back submits and polls.
    assert option(procfile["worker"], "-Q") == AKOOL_QUEUE
    assert option(procfile["archive"], "-Q") == ARCHIVE_QUEUE


def test_compose_workers_consume_the_queues_of_their_procfile_lines(
    compose: dict[str, Any], procfile: dict[str, list[str]]
) -> None:
    services = compose["services"]
    for line, service in WORKER_LINES.items():
        _, command = without_env(procfile[line])
        assert option(services[service]["command"], "-Q") == option(command, "-Q")
        assert services[service]["command"][:4] == command[:4]


def test_the_image_sets_the_environment_the_procfile_workers_run_with(
    compose: dict[str, Any], procfile: dict[str, list[str]]
) -> None:
    for line, service in WORKER_LINES.items():
        wanted, _ = without_env(procfile[line])
        env = image_env() | compose["services"][service]["environment"]
        assert {k: env.get(k) for k in wanted} == wanted, service


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
        if name == "flower":
            assert service["image"] == f"lipsync-flower:{VERSION}", name
            assert service["build"] == {"context": ".", "target": "flower"}, name
        else:
            assert service["image"] == f"lipsync-worker:{VERSION}", name
            assert service["build"] == {"context": ".", "target": "app"}, name
        assert service["env_file"] == [".env"], name
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0", name


def test_every_image_is_an_exact_release(compose: dict[str, Any]) -> None:
    # A full version (maybe a variant after it), or MinIO's release timestamps.
    exact = re.compile(r"\d+\.\d+\.\d+(-[a-z0-9.]+)*|RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ")
    dockerfile = (ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", dockerfile, re.MULTILINE)
    images = [service["image"] for service in compose["services"].values()]
    for image in images + [base for base in bases if ":" in base]:
        _, _, tag = image.partition(":")
        assert exact.fullmatch(tag), f"{image} is not pinned to an exact release"
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", bases[0]), bases[0]
    # The other stages build on the first; none pulls a floating image.
    assert set(bases[1:]) <= set(re.findall(r"\bAS\s+(\S+)", dockerfile)), bases


def test_only_the_web_service_listens_on_every_interface(compose: dict[str, Any]) -> None:
    published = {name: service.get("ports", []) for name, service in compose["services"].items()}
    # Akool must reach the webhook receiver from the internet.
    assert published.pop("web") == ["8000:8000"]
    for name, ports in published.items():
        for port in ports:
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
    container_ports = {
        name: {port.rsplit(":", 1)[1] for port in ports} for name, ports in published.items()
    }
    assert container_ports["redis"] == {"6379"}
    assert container_ports["minio"] == {"9000", "9001"}  # the S3 API and the console
    assert container_ports["flower"] == {"5555"}


def test_flower_asks_for_basic_auth_from_dot_env_and_compose_refuses_to_start_without_it(
    compose: dict[str, Any],
) -> None:
    flower = compose["services"]["flower"]
    auth = flower["environment"]["FLOWER_BASIC_AUTH"]
    assert re.fullmatch(r"\$\{FLOWER_BASIC_AUTH:\?[^}]+\}", auth), auth
    # Flower reads it from the environment: the password stays off the command line.
    assert not any("basic-auth" in arg or "basic_auth" in arg for arg in flower["command"])
    example = (ROOT / ".env.example").read_text()
    assert re.search(r"^FLOWER_BASIC_AUTH=$", example, re.MULTILINE), "no empty example value"


def test_workers_and_beat_get_longer_than_their_shutdown_before_sigkill(
    compose: dict[str, Any],
) -> None:
    for name in ("worker-akool", "worker-archive", "beat"):
        grace = seconds(compose["services"][name]["stop_grace_period"])
        assert grace >= WORKER_SHUTDOWN_SECONDS, name


def test_worker_memory_limits_hold_their_processes_at_a_fixed_concurrency(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    need = {
        # The main process and its children, plus the waiting polls the main process holds.
        "worker-akool": lambda n: (n + 1) * PROCESS_MIB + WAITING_POLLS_MIB,
        # The main process and its children, plus each copy's buffers.
        "worker-archive": lambda n: (n + 1) * PROCESS_MIB + n * ARCHIVE_BUFFERS_MIB,
    }
    for name, needed in need.items():
        # A limit means nothing if the process count follows the host's CPUs.
        concurrency = int(option(services[name]["command"], "--concurrency"))
        limit = megabytes(services[name]["mem_limit"])
        assert limit >= needed(concurrency), f"{name}: {limit} MiB < {needed(concurrency)} MiB"


def test_compose_and_env_example_only_name_real_settings(compose: dict[str, Any]) -> None:
    known = settings_variables() | EXTERNAL_VARIABLES | {"PORT"}
    named = set()
    for name in APP_SERVICES:
        named |= set(compose["services"][name]["environment"])
    example = (ROOT / ".env.example").read_text()
    named |= set(re.findall(r"^([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    assert named <= known, named - known


def test_the_configuration_doc_documents_every_setting() -> None:
    configuration = (ROOT / "docs" / "configuration.md").read_text()
    missing = {name for name in settings_variables() if f"`{name}`" not in configuration}
    assert not missing, f"docs/configuration.md's settings table lacks {sorted(missing)}"


def test_honcho_accepts_the_procfile() -> None:
    import subprocess
    import sys

    honcho = Path(sys.executable).parent / "honcho"
    done = subprocess.run(
        [str(honcho), "check"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "worker, archive, beat, web" in done.stderr + done.stdout


def test_every_lock_pins_each_package_to_one_version_with_its_hashes() -> None:
    for name in LOCKS:
        entries = re.split(r"\n(?=\S)", (ROOT / name).read_text())
        pins = [entry for entry in entries if not entry.startswith("#")]
        assert pins, name
        for entry in pins:
            assert re.match(r"[A-Za-z0-9._-]+==\S+ \\\n", entry), f"{name}: {entry[:80]!r}"
            assert re.search(r"--hash=sha256:[0-9a-f]{64}", entry), f"{name}: {entry[:80]!r}"


def test_each_lock_satisfies_pyproject_for_its_extras() -> None:
    optional = PYPROJECT["project"]["optional-dependencies"]
    for name, extras in LOCKS.items():
        pins = lock_pins(name)
        wanted = list(PYPROJECT["project"]["dependencies"])
        for extra in extras:
            wanted += optional[extra]
        for line in wanted:
            requirement = Requirement(line)
            package = canonicalize_name(requirement.name)
            assert package in pins, f"{name} lacks {line}: run `make lock`"
            assert requirement.specifier.contains(pins[package], prereleases=True), (
                f"{name} pins {package}=={pins[package]}, outside {line}: run `make lock`"
            )


def test_the_image_locks_pin_the_versions_the_tests_run() -> None:
    tested = lock_pins("requirements-dev.lock")
    for name in ("requirements.lock", "requirements-flower.lock"):
        pins = lock_pins(name)
        differ = {p: (v, tested[p]) for p, v in pins.items() if p in tested and tested[p] != v}
        assert not differ, f"{name} differs from requirements-dev.lock: {differ}"


def test_the_app_image_lock_holds_neither_flower_nor_test_tools() -> None:
    runtime = lock_pins("requirements.lock")
    assert not {"flower", "tornado", "moto", "pytest", "mypy", "ruff"} & set(runtime)
    assert "flower" in lock_pins("requirements-flower.lock")


def test_the_dockerfile_installs_the_locks_with_hashes_and_the_project_without_deps() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^(?=FROM\s)", dockerfile, flags=re.MULTILINE)[1:]
    named = {re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", stage)[0]: stage for stage in stages}
    runs = re.findall(r"^RUN (.*)$", named["base"], re.MULTILINE)
    assert runs[0] == "pip install --require-hashes --no-deps -r requirements.lock"
    assert runs[1].startswith("pip install --no-deps . ")
    assert re.search(
        r"^FROM base AS flower\n(.*\n)*RUN pip install --require-hashes --no-deps "
        r"-r requirements-flower.lock$",
        named["flower"],
        re.MULTILINE,
    )
    # `docker build .` without a target builds the last stage: the app, without Flower.
    assert list(named)[-1] == "app" and named["app"].startswith("FROM base AS app")
    assert "flower" not in named["app"].replace("FROM base AS app", "").split("CMD")[0]


def test_the_makefile_builds_the_virtualenv_from_the_dev_lock_with_hashes() -> None:
    makefile = re.sub(r"\\\n\s*", " ", (ROOT / "Makefile").read_text())
    recipe = re.search(r"^\$\(STAMP\):.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert recipe, "no virtualenv recipe"
    steps = recipe[1]
    assert "--require-hashes --no-deps -r requirements-uv.lock" in steps
    assert "--require-hashes --no-deps -r requirements-dev.lock" in steps
    assert "--no-deps -e ." in steps
    assert "'.[" not in steps, "the virtualenv resolves dependencies instead of the lock"


def test_exported_metrics_are_found_in_worker_metrics() -> None:
    # The regex must keep finding the metrics docs/operations.md documents.
    assert {
        "lipsync_jobs",
        "lipsync_akool_calls_total",
        "lipsync_completion_to_archived_seconds_bucket",
        "lipsync_jobs_at_risk",
        "lipsync_corrupt_records_total",
    } <= exported_metrics()


def test_every_alert_rule_says_how_long_how_bad_and_what_to_do() -> None:
    rules = alert_rules()
    assert len({rule["alert"] for rule in rules}) == len(rules)
    for rule in rules:
        assert seconds(rule["for"]) > 0, rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert len(rule["annotations"]["action"]) > 40, rule["alert"]


def test_alert_rules_name_only_exported_metrics_and_cover_the_readme() -> None:
    exported = exported_metrics()
    named: set[str] = set()
    for rule in alert_rules():
        metrics = metrics_named(rule["expr"])
        assert metrics, f"{rule['alert']} reads no lipsync metric"
        assert metrics <= exported, f"{rule['alert']}: {metrics - exported}"
        named |= metrics
    assert ALERTED_METRICS <= named, ALERTED_METRICS - named


def test_the_dashboard_takes_its_prometheus_from_a_datasource_variable() -> None:
    dashboard = json.loads((ROOT / "config" / "grafana-dashboard.json").read_text())
    assert dashboard["schemaVersion"] >= 39
    (variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "DS_PROMETHEUS"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    for panel in dashboard_panels():
        sources = [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]
        for source in sources:
            assert source == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]


def test_dashboard_panels_name_only_exported_metrics() -> None:
    exported = exported_metrics()
    named: set[str] = set()
    panels = dashboard_panels()
    assert len({panel["id"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            metrics = metrics_named(target["expr"])
            assert metrics, f"{panel['title']}: {target['expr']}"
            assert metrics <= exported, f"{panel['title']}: {metrics - exported}"
            named |= metrics
    assert DASHBOARD_METRICS <= named, DASHBOARD_METRICS - named
