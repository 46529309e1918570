"""The dashboard in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
driven by Selenium), against the Procfile's web process, a worker, redis-server, the S3
server and the simulator: sign in, see a failed job's error and an archived job's player,
retry the failed job and watch it archive; see a running job's metadata and cancel it.

Selenium never downloads anything: the driver is /usr/bin/chromedriver, named through a
Service, and Selenium Manager is told to stay offline (SE_OFFLINE). Without the two tools the
test is skipped with the reason, and fails under CI (CI=true): `make test` installs them.
With LIPSYNC_SCREENSHOTS=<dir> it saves the screenshots of the pages that
docs/operations.md shows there (and of a running job's page with its Cancel button).
"""

from __future__ import annotations

import json
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

from tests.integration.conftest import AUDIO_URL, Deployment, video_url
from tests.integration.test_dashboard import (
    FAILS_ONCE,
    PASSWORD,
    USER,
    Dashboard,
    dashboard_deployment,
)
from worker.dev.stack import Stack
from worker.status import JobStatus
from worker.store import Job
from worker.web.dashboard.app import PRESIGN_SECONDS

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Seconds for a page element to show up, and for the retried job to archive (the page
# reloads itself every few seconds while the job runs).
ELEMENT_WAIT_SECONDS = 15
ARCHIVED_WITHIN_SECONDS = 90
WINDOW_SIZE = "1100,800"
# A job the simulator keeps processing (polled) until it is cancelled or the test ends.
STAYS_PROCESSING = {"polls": 100000}
# Seconds for a submitted job to be seen processing by its polls.
PROCESSING_WITHIN_SECONDS = 30
# Tries of a click whose element a page reload (every few seconds) replaced meanwhile.
CLICK_TRIES = 5


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


def submit_with_contract(deployment: Deployment, video: str, **contract: Any) -> str:
    """submit_lipsync from another process with the caller's contract arguments (JSON)."""
    code = (
        "import json, sys; from worker import submit_lipsync; "
        "print(submit_lipsync(sys.argv[1], sys.argv[2], **json.loads(sys.argv[3])))"
    )
    return deployment.python(code, video, AUDIO_URL, json.dumps(contract)).strip().splitlines()[-1]


def processing(deployment: Deployment, job_id: str) -> Job:
    """The job once its polls see it processing (bounded wait)."""
    deadline = time.monotonic() + PROCESSING_WITHIN_SECONDS
    job = deployment.store.get(job_id)
    while job.status != JobStatus.PROCESSING and time.monotonic() < deadline:
        assert not job.is_final, job
        time.sleep(0.2)
        job = deployment.store.get(job_id)
    assert job.status == JobStatus.PROCESSING, job
    return job


def click(driver: Any, element_id: str) -> None:
    """Click the element, found again if the page reloaded itself under the click."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(CLICK_TRIES - 1):
        try:
            driver.find_element("id", element_id).click()
            return
        except StaleElementReferenceException:
            continue
    driver.find_element("id", element_id).click()


def test_an_operator_sees_a_running_jobs_metadata_and_cancels_it(
    dashboard: Dashboard, browser: Any
) -> None:
    deployment = dashboard.deployment
    video = video_url(**STAYS_PROCESSING)
    hostile = "<script>alert(1)</script>"
    key = f"browser/{os.urandom(6).hex()}.mp4"
    job_id = submit_with_contract(
        deployment, video, metadata={"client": hostile, "order": "42"}, archive_key=key
    )
    processing(deployment, job_id)

    browser.get(signed_in(dashboard, f"/jobs/{job_id}"))
    assert browser.find_element("id", "status").text == "processing"
    rows = browser.find_element("id", "metadata").find_elements("tag name", "tr")
    assert [r.text for r in rows[1:]] == [f"client {hostile}", "order 42"]  # as text: no script
    assert browser.find_element("id", "archive-key").text == f"lipsync/{key}"
    screenshot(browser, "dashboard-cancel.png")

    click(browser, "cancel")
    assert browser.find_element("id", "flash").text.startswith("Cancelled:")
    wait_for_text(browser, "status", "cancelled", ELEMENT_WAIT_SECONDS)
    assert "cancelled by the application" in browser.find_element("id", "error").text
    assert 'id="cancel"' not in browser.page_source  # (find_elements would wait it out)
    job = deployment.store.get(job_id)
    assert job.status == JobStatus.CANCELLED and job.archive_uri is None
    assert deployment.akool_jobs_for(video) == 1
