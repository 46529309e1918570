"""Tests of the simulator's HTTP plumbing: Nagle's algorithm is off on accepted sockets."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
import requests

from worker.dev.simulator import Simulator, SimulatorHandler


def test_the_simulator_handler_turns_nagle_off() -> None:
    assert SimulatorHandler.disable_nagle_algorithm is True


def test_the_simulator_sets_tcp_nodelay_on_the_sockets_it_accepts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Read the option right after http.server's own setup(), which applies the attribute.
    seen: list[int] = []
    original: Callable[[SimulatorHandler], None] = SimulatorHandler.setup

    def setup(self: SimulatorHandler) -> None:
        original(self)
        seen.append(self.connection.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    monkeypatch.setattr(SimulatorHandler, "setup", setup)
    simulator = Simulator().start()
    try:
        assert requests.get(simulator.base_url + "/_sim/stats", timeout=10).ok
    finally:
        simulator.stop()
    assert seen and all(seen), seen
