"""One installed package: the wheel installs the top-level package `worker` only, so an
application with a `config` package of its own (as cookiecutter-django projects have) imports
both its settings and the worker.

The wheel is built from a copy of the checkout, so no build output lands in the working tree
and no stale `build/` directory leaks into the wheel. It is installed into a fresh virtualenv
whose dependencies come from this one through a .pth line: a directory named there is not
itself a site directory, so this virtualenv's editable-install finder stays inactive and
`worker` really is the wheel's.
"""

from __future__ import annotations

import email.parser
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_SECONDS = 300
RUN_TIMEOUT_SECONDS = 120
# What a fresh clone would not have: version control, virtualenvs, caches, build output.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".hypothesis",
    ".demo",
)
APP_SETTINGS = 'SECRET_KEY = "the application\'s own settings"\n'
IMPORTS = (
    "import config, worker\n"
    "from config.settings import SECRET_KEY\n"
    "from worker import submit_lipsync, get_job, wait_for_job\n"
    "print(config.__file__)\n"
    "print(worker.__file__)\n"
)

pytestmark = pytest.mark.integration


def run(argv: list[str | Path], *, timeout: float = RUN_TIMEOUT_SECONDS, **kwargs: object) -> str:
    """Run a command (bounded), fail the test with its output if it fails; its stdout."""
    done = subprocess.run(
        [str(arg) for arg in argv], capture_output=True, text=True, timeout=timeout, **kwargs
    )
    assert done.returncode == 0, f"{argv} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def clean_env() -> dict[str, str]:
    """This environment without anything that would put the checkout on a fresh sys.path."""
    hidden = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV")
    return {k: v for k, v in os.environ.items() if k not in hidden}


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="lipsync-packaging-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def wheel(workdir: Path) -> Path:
    """The wheel pip builds from a copy of this checkout."""
    source = workdir / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    # With build isolation: this virtualenv has no `wheel` and an older setuptools than
    # pyproject.toml's build requirements, so --no-build-isolation cannot build here. pip
    # then installs the build requirements into a throwaway environment (seconds).
    argv = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", "dist", source]
    run(argv, cwd=workdir, timeout=BUILD_TIMEOUT_SECONDS)
    (built,) = (workdir / "dist").glob("lipsync_worker-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_venv(workdir: Path, wheel: Path) -> Path:
    """A new virtualenv with the wheel installed and this one's site-packages on its path."""
    venv = workdir / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    pip = [sys.executable, "-m", "pip", "--python", python]
    run([*pip, "install", "--quiet", "--no-deps", "--no-index", wheel])
    purelib = run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"])
    (Path(purelib.strip()) / "lipsync-worker-deps.pth").write_text(
        sysconfig.get_path("purelib") + "\n"
    )
    return venv


@pytest.fixture(scope="module")
def application(workdir: Path) -> Path:
    """An application directory with a `config` package of its own."""
    app = workdir / "app"
    (app / "config").mkdir(parents=True)
    (app / "config" / "__init__.py").write_text("")
    (app / "config" / "settings.py").write_text(APP_SETTINGS)
    return app


def wheel_names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def test_the_wheel_declares_worker_as_its_only_top_level_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (top_level,) = [n for n in archive.namelist() if n.endswith(".dist-info/top_level.txt")]
        assert archive.read(top_level).decode().split() == ["worker"]


def test_the_wheel_holds_no_other_importable_file_than_the_worker_package(wheel: Path) -> None:
    tops = {name.split("/")[0] for name in wheel_names(wheel)}
    importable = {top for top in tops if not top.endswith((".dist-info", ".data"))}
    assert importable == {"worker"}


def test_the_wheel_ships_the_redis_config_as_a_data_file(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (conf,) = [
            n
            for n in archive.namelist()
            if n.endswith(".data/data/share/lipsync-worker/redis.conf")
        ]
        assert archive.read(conf) == (ROOT / "config" / "redis.conf").read_bytes()


def test_an_application_with_its_own_config_package_imports_its_settings_and_the_worker(
    fresh_venv: Path, application: Path
) -> None:
    out = run([fresh_venv / "bin" / "python", "-c", IMPORTS], cwd=application, env=clean_env())
    config_file, worker_file = (Path(line).resolve() for line in out.splitlines()[-2:])
    assert config_file.is_relative_to(application.resolve())
    assert worker_file.is_relative_to(fresh_venv.resolve()), "worker came from the checkout"


def test_the_installed_stack_finds_the_redis_config_the_wheel_installed(
    fresh_venv: Path, application: Path
) -> None:
    code = "from worker.dev.stack import find_redis_config; print(find_redis_config())"
    out = run([fresh_venv / "bin" / "python", "-c", code], cwd=application, env=clean_env())
    installed = fresh_venv / "share" / "lipsync-worker" / "redis.conf"
    assert Path(out.strip()).resolve() == installed.resolve()


def test_the_wheel_ships_the_py_typed_marker_so_applications_type_check_against_it(
    wheel: Path,
) -> None:
    assert "worker/py.typed" in wheel_names(wheel)


def wheel_requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.parser.BytesParser().parsebytes(archive.read(name))
    return [Requirement(line) for line in metadata.get_all("Requires-Dist", [])]


def test_the_demo_extra_brings_moto_server_with_the_range_the_dev_extra_tests(
    wheel: Path,
) -> None:
    def moto(extra: str) -> Requirement:
        (found,) = [
            r
            for r in wheel_requirements(wheel)
            if r.name == "moto" and r.marker and r.marker.evaluate({"extra": extra})
        ]
        return found

    assert moto("demo").extras == {"server"}
    assert moto("demo").specifier == moto("dev").specifier


def test_lipsync_demo_without_moto_says_in_one_line_which_extra_to_install(
    fresh_venv: Path, application: Path
) -> None:
    # The installed package as an application that skipped the demo extra would have it.
    code = (
        "import sys\n"
        "sys.modules['moto'] = None\n"
        "from worker.cli.main import main\n"
        "sys.exit(main(['demo']))\n"
    )
    done = subprocess.run(
        [fresh_venv / "bin" / "python", "-c", code],
        cwd=application,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
    )
    assert done.returncode == 1
    assert done.stdout == "", "the demo started something before checking"
    (line,) = done.stderr.splitlines()
    assert "pip install 'lipsync-worker[demo]'" in line
