"""Tests of the simulator's command line: ``python -m worker.dev.simulator``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import requests

from worker.dev.simulator import SimulatorConfig

TIMEOUT = 10
PROJECT_ROOT = Path(__file__).resolve().parents[3]
ENV = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
COMMAND = [sys.executable, "-m", "worker.dev.simulator"]


def test_main_prints_ready_line_and_serves_until_terminated() -> None:
    cmd = [*COMMAND, "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=ENV, cwd=PROJECT_ROOT)
    try:
        assert proc.stdout is not None
        timer = threading.Timer(15, proc.kill)
        timer.start()
        line = proc.stdout.readline()
        timer.cancel()
        assert line.startswith("SIMULATOR READY http://127.0.0.1:"), line
        base_url = line.split()[-1]
        assert requests.get(base_url + "/_sim/stats", timeout=TIMEOUT).json()["submits"] == 0
        proc.terminate()
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=15)


def test_help_shows_every_default_and_the_archive_allowed_hosts_rule() -> None:
    done = subprocess.run(
        [*COMMAND, "--help"],
        env=ENV,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    # argparse wraps help to the terminal's width: compare with the line breaks taken out.
    text = " ".join(done.stdout.split())
    defaults = SimulatorConfig()
    expected = {
        "--host": "127.0.0.1",
        "--port": "8080",
        "--api-key": defaults.api_key,
        "--client-id": defaults.client_id,
        "--client-secret": defaults.client_secret,
        "--size": str(defaults.default_size),
    }
    for option, default in expected.items():
        after = text.split(f"{option} {option.lstrip('-').replace('-', '_').upper()}")[-1]
        assert f"(default: {default})" in after.split(" --")[0], option
    assert "must list the simulator's host exactly in ARCHIVE_ALLOWED_HOSTS" in text
    assert "ARCHIVE_ALLOWED_HOSTS=127.0.0.1" in text
