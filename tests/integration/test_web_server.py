"""The web process's HTTP server (waitress) under slow clients and at SIGTERM: the Procfile's
`web:` line, a real worker and the Akool simulator, all on loopback.

On main (the standard library's threaded server) 300 slow clients made 301 threads and
clients sending a byte every 8 s held their connections for good; here they cost a socket
each, the callback that matters is answered at once, and every slow client is dropped.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import procfile_worker_env, video_url
from tests.integration.test_webhooks import (
    NEVER_DONE_BY_POLLING,
    Hooked,
    hooked_deployment,
    start_receiver,
)
from worker.dev.stack import Stack, free_port
from worker.web import server as web
from worker.web.app import CALLBACK_PATH, HEALTH_PATH

pytestmark = pytest.mark.integration

SLOW_CLIENTS = 300
TRICKLE_GAP_SECONDS = 5.0
CALLBACK_ANSWERED_WITHIN_SECONDS = 2.0
HEALTH_ANSWERED_WITHIN_SECONDS = 1.0
# Every slow client is gone by then: the server's longest allowance for a request (its
# deadline, from the first byte), two checks late, and a second of slack for a busy machine.
ALL_DROPPED_WITHIN_SECONDS = web.REQUEST_DEADLINE_SECONDS + 2 * web.CLEANUP_INTERVAL_SECONDS + 1.0
# The start of a request line; slow clients send it one byte at a time.
TRICKLED = b"POST /webhooks/akool HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 300\r\n\r\n"
# SIGTERM: how long the slow request keeps arriving after it, and how long the exit may take.
SLOW_REQUEST_AFTER_SIGTERM_SECONDS = 1.5
EXIT_WITHIN_SECONDS = 5.0


class Tricklers:
    """Clients that open a connection each and send one byte at a time, never a whole
    request; they notice when the server closes their connection."""

    def __init__(self, port: int, count: int) -> None:
        self.sockets: list[socket.socket] = []
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.setblocking(False)
            self.sockets.append(sock)
        self.open = set(range(count))
        self.sent = 0

    def trickle(self) -> None:
        """Send the next byte on every connection still open."""
        for i in list(self.open):
            try:
                self.sockets[i].send(TRICKLED[self.sent : self.sent + 1])
            except OSError:
                self.open.discard(i)
        self.sent += 1

    def still_open(self) -> int:
        """Connections the server has not closed (a closed one reads EOF or a reset)."""
        for i in list(self.open):
            try:
                if self.sockets[i].recv(1024) == b"":
                    self.open.discard(i)
            except BlockingIOError:
                pass
            except OSError:
                self.open.discard(i)
        return len(self.open)

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


@contextlib.contextmanager
def trickling(port: int, count: int) -> Iterator[Tricklers]:
    clients = Tricklers(port, count)
    try:
        yield clients
    finally:
        clients.close()


def threads_of(pid: int) -> int:
    """The process's thread count, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no Threads line for {pid}")


def timed(call: Callable[[], requests.Response]) -> tuple[requests.Response, float]:
    """The answer and the seconds it took."""
    started = time.monotonic()
    answer = call()
    return answer, time.monotonic() - started


@pytest.fixture(scope="module")
def server(stack: Stack) -> Iterator[Hooked]:
    with hooked_deployment(stack) as running:
        yield running


def test_a_signed_callback_is_answered_at_once_while_300_clients_trickle_bytes(
    server: Hooked,
) -> None:
    job_id, akool_id = server.submitted(video_url(seconds=600, webhook=0, **NEVER_DONE_BY_POLLING))
    callback = server.callback(akool_id, 3)
    pid = server.receiver.proc.pid if server.receiver.proc else 0
    health = server.url.replace(CALLBACK_PATH, HEALTH_PATH)

    with trickling(server.port, SLOW_CLIENTS) as slow:
        slow.trickle()
        answer, answered_in = timed(lambda: server.post(callback))
        healthy, health_in = timed(lambda: requests.get(health, timeout=10))
        most_threads = threads_of(pid)
        under_load = slow.still_open()

        started = next_byte = time.monotonic()
        while slow.still_open() and time.monotonic() - started < ALL_DROPPED_WITHIN_SECONDS:
            if time.monotonic() >= next_byte:
                slow.trickle()
                next_byte += TRICKLE_GAP_SECONDS
            most_threads = max(most_threads, threads_of(pid))
            time.sleep(0.2)
        left = slow.still_open()

    assert under_load == SLOW_CLIENTS  # the callback and the health check met all of them
    assert answer.status_code == 200 and answer.json()["outcome"] == "archiving"
    assert answered_in < CALLBACK_ANSWERED_WITHIN_SECONDS
    assert healthy.json() == {"ok": True} and health_in < HEALTH_ANSWERED_WITHIN_SECONDS
    assert most_threads <= web.MAX_THREADS
    assert left == 0
    job = server.deployment.wait(job_id)
    assert job.status == "archived", job.error
    assert server.sim_job(akool_id)["downloads"] == 1


def test_sigterm_lets_a_slow_request_finish_then_the_web_process_exits_0(
    server: Hooked, stack: Stack
) -> None:
    port = free_port()
    env = procfile_worker_env(dict(server.deployment.env, PORT=str(port)))
    receiver = start_receiver(stack, env, port)
    _, akool_id = server.submitted(video_url(seconds=600, webhook=0, **NEVER_DONE_BY_POLLING))
    body = json.dumps(server.callback(akool_id, 2)).encode()
    head = (
        f"POST {CALLBACK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(head + body[:10])
            time.sleep(0.3)
            receiver.send(signal.SIGTERM)
            time.sleep(SLOW_REQUEST_AFTER_SIGTERM_SECONDS)
            alive_while_in_flight = receiver.alive
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
            sock.sendall(body[10:])
            response = http.client.HTTPResponse(sock)
            response.begin()
            answer = json.loads(response.read())
        assert receiver.proc is not None
        code = receiver.proc.wait(EXIT_WITHIN_SECONDS)
    finally:
        receiver.stop()

    assert alive_while_in_flight
    assert response.status == 200 and answer == {"ok": True, "outcome": "noted"}
    assert code == 0
    log = receiver.log_text()
    assert "Traceback" not in log
    assert f'"POST {CALLBACK_PATH} HTTP/1.1" 200' in log
