"""The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
driven by Selenium), against the Procfile's web process, a worker, redis-server, the S3
server and the simulator: sign in, see a failed job's error and an archived job's player,
retry the failed job and watch it archive.

Selenium never downloads anything: the driver is /usr/bin/chromedriver, named through a
Service, and Selenium Manager is told to stay offline (SE_OFFLINE). Without the two tools the
test is skipped with the reason, and fails under CI (CI=true): `make test` installs them.
With LIPSYNC_SCREENSHOTS=<dir> it saves the screenshots of both pages that
docs/operations.md shows there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.integration.conftest import video_url
from tests.integration.test_dashboard import (
    FAILS_ONCE,
    PASSWORD,
    USER,
    Dashboard,
    dashboard_deployment,
)
from worker.dev.stack import Stack
from worker.status import JobStatus
from worker.web.dashboard.app import PRESIGN_SECONDS

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Seconds for a page element to show up, and for the retried job to archive (the page
# reloads itself every few seconds while the job runs).
ELEMENT_WAIT_SECONDS = 15
ARCHIVED_WITHIN_SECONDS = 90
WINDOW_SIZE = "1100,800"


def _missing_tools() -> str | None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package")
    return ", ".join(missing) or None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium through Debian's chromedriver; nothing downloaded."""
    missing = _missing_tools()
    if missing:
        reason = (
            f"{missing} missing: run `make chromium` (apt-get install chromium chromium-driver)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager: never fetch a browser or driver
    profile = tempfile.mkdtemp(prefix="lipsync-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # root in a container has no user namespace for the sandbox
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW_SIZE}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.implicitly_wait(ELEMENT_WAIT_SECONDS)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def dashboard(stack: Stack) -> Iterator[Dashboard]:
    with dashboard_deployment(stack) as running:
        yield running


def signed_in(dashboard: Dashboard, path: str) -> str:
    """The page's URL with the credentials in it, as a browser is given them."""
    return f"http://{USER}:{PASSWORD}@127.0.0.1:{dashboard.internal_port}{path}"


def screenshot(driver: Any, name: str) -> None:
    directory = os.environ.get("LIPSYNC_SCREENSHOTS")
    if directory:
        driver.save_screenshot(str(Path(directory) / name))


def presigned_for_at_most(url: str, seconds: float) -> bool:
    """True when a presigned URL (SigV2's Expires epoch, or SigV4's X-Amz-Expires) stops
    working within `seconds` from now."""
    query = parse_qs(urlsplit(url).query)
    if "X-Amz-Expires" in query:
        return int(query["X-Amz-Expires"][0]) <= seconds
    return int(query["Expires"][0]) <= time.time() + seconds + 1


def wait_for_text(driver: Any, element_id: str, text: str, seconds: float) -> str:
    """The element's text once it holds `text` (the page reloads itself meanwhile)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + seconds
    seen = ""
    while time.monotonic() < deadline:
        try:
            seen = driver.find_element("id", element_id).text
        except (NoSuchElementException, StaleElementReferenceException):
            seen = ""
        if text in seen:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"#{element_id} never showed {text!r} (last: {seen!r})")


def test_an_operator_sees_errors_and_videos_and_retries_a_failed_job_until_it_archives(
    dashboard: Dashboard, browser: Any
) -> None:
    deployment = dashboard.deployment
    failed = deployment.run(video_url(**FAILS_ONCE))
    archived = deployment.run(video_url(polls=2))
    assert failed.status == JobStatus.FAILED and archived.status == JobStatus.ARCHIVED

    # The jobs page: both jobs, the failed one with its error sentence.
    browser.get(signed_in(dashboard, "/jobs"))
    table = browser.find_element("id", "jobs").text
    assert failed.id in table and archived.id in table
    assert (failed.error or "?") in table
    screenshot(browser, "dashboard-jobs.png")

    # The archived job's page: a player whose presigned source answers 200.
    browser.find_element("link text", archived.id).click()
    player = browser.find_element("id", "player")
    source = player.get_attribute("src") or ""
    assert urlsplit(source).port == urlsplit(deployment.env["S3_ENDPOINT_URL"]).port
    assert "Signature=" in source and presigned_for_at_most(source, PRESIGN_SECONDS)
    assert requests.get(source, timeout=10).status_code == 200
    assert browser.find_element("id", "archive-uri").text == archived.archive_uri
    screenshot(browser, "dashboard-job.png")

    # The failed job's page: its error, then a retry (a form with the page's CSRF token).
    browser.get(signed_in(dashboard, f"/jobs/{failed.id}"))
    assert browser.find_element("id", "error").text == failed.error
    browser.find_element("id", "retry").click()
    assert "re-driven from its submit step" in browser.find_element("id", "flash").text
    wait_for_text(browser, "status", "archived", ARCHIVED_WITHIN_SECONDS)
    assert browser.find_element("id", "player").get_attribute("src")
    assert deployment.store.get(failed.id).status == JobStatus.ARCHIVED
    assert deployment.akool_jobs_for(failed.video_url) == 1
