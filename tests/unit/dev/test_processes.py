"""Ports for the local rig's servers: never handed out twice by one process, never one that
is taken, and out of the kernel's ephemeral range so no outgoing connection takes one."""

from __future__ import annotations

import itertools
import socket
import subprocess
import sys

import pytest

from worker.dev import processes
from worker.dev.processes import PORTS_PER_PROCESS, RIG_PORTS, free_port


def test_one_process_never_hands_out_the_same_port_twice() -> None:
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == len(ports)
    assert all(port in RIG_PORTS for port in ports)


def test_a_port_some_server_listens_on_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    with socket.socket() as held:
        held.bind(("127.0.0.1", port))
        held.listen()
        monkeypatch.setattr(processes, "_ports", itertools.count(port - RIG_PORTS.start))
        assert free_port() == port + 1


def test_test_processes_side_by_side_choose_from_stretches_that_do_not_overlap() -> None:
    code = "from worker.dev.processes import free_port; print(free_port())"
    firsts = {
        int(
            subprocess.run(
                [sys.executable, "-c", code],
                env={"PYTEST_XDIST_WORKER": worker},
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        // PORTS_PER_PROCESS
        for worker in ("gw0", "gw1", "gw2", "gw3")
    }
    assert len(firsts) == 4
