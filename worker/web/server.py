"""The web process: Akool's callbacks and the health check over HTTP.

`python -m worker.web` (the Procfile's `web:` line) serves `POST /webhooks/akool` and
`GET /healthz` on $PORT with waitress, and the fleet's `/metrics` and the jobs dashboard
(worker/web/dashboard/) on METRICS_PORT when it is set, with a second waitress server: a private
port, so $PORT (which faces the internet) answers both 404. What a callback means is decided
in worker/web/callbacks.py, and the routes in worker/web/app.py; this module runs them.

Why waitress, measured against the standard library's threaded server it replaces (one
thread per connection, no cap): 300 slow clients made 301 threads there, 96 clients sending
a byte every 8 s still held their connections after 40 s, every idle timeout printed a
traceback to raw stderr, and daemon threads cut requests in flight at exit. waitress reads
each request whole in one event loop and only then hands it to a fixed pool of threads, so
slow clients cost a socket each, not a thread; the bounds below cap the sockets and how long
each may take. On SIGTERM it stops accepting and lets the requests in flight finish.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from typing import Any

# waitress ships no type hints (pyproject.toml tells mypy so): it is Any here.
from waitress import wasyncore
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, WSGITask

from worker import deps, logs
from worker.akool import reconcile
from worker.clock import wall_clock
from worker.config import Settings, preflight
from worker.errors import ConfigError
from worker.net import escape_controls
from worker.tasks import retry_job
from worker.web.app import CALLBACK_PATH, MAX_BODY_BYTES, WebhookApp, WSGIApp, build_app
from worker.web.dashboard import app as dashboard_app

logger = logging.getLogger(__name__)

# --- The server's bounds (waitress), each for the internet in front of it -------------------
# Threads that run the app. A request reaches them only once it arrived whole, so a thread is
# busy for a callback's few Redis round trips (milliseconds), never for a slow client: 8
# answer hundreds of callbacks a second, and the process's threads stay bounded whatever the
# clients do (MAX_THREADS).
SERVER_THREADS = 8
# Open connections at most; past it waitress stops accepting and new ones wait in the kernel's
# listen backlog until slots free up. Each costs one file descriptor and a few KiB: room for
# the 300 slow clients of the measurement plus real traffic, and well under the usual 1024
# open files a process may have.
CONNECTION_LIMIT = 500
# A connection silent this long (before its first byte, mid-request, or idle between
# keep-alive requests) is closed: shorter than the 5 s gaps of a client trickling bytes.
# (A proxy in front must close its idle connections to us sooner, or it may reuse a closed one.)
IDLE_TIMEOUT_SECONDS = 4
# A request must arrive whole within this many seconds of its first byte, however steadily it
# trickles (waitress's own timeout is only for silence): 64 KiB in 10 s is 6.4 KiB/s, and a
# callback is a few hundred bytes sent at once.
REQUEST_DEADLINE_SECONDS = 10.0
# How often both timeouts are checked: a slow client is dropped at most this much late.
CLEANUP_INTERVAL_SECONDS = 1
# Akool's headers are well under 1 KiB; waitress would take 256 KiB.
MAX_HEADER_BYTES = 16 * 1024
# waitress refuses a body of max_request_body_size bytes or more (>=), MAX_BODY_BYTES only more.
MAX_REQUEST_BODY_BYTES = MAX_BODY_BYTES + 1
# The event loop wakes at least this often (seconds) to see a SIGTERM and run the checks.
LOOP_TICK_SECONDS = 0.25
# After SIGTERM, requests in flight get this long to arrive and be answered (platforms wait
# 10 s (docker) to 30 s (Heroku, Kubernetes) before SIGKILL); then the process exits anyway.
SHUTDOWN_GRACE_SECONDS = 8.0
# Then the app's threads get this long to end; one still busy past the grace is abandoned.
THREADS_JOIN_SECONDS = 1.0
# Threads that answer METRICS_PORT (a scrape, a dashboard page: a few pipelined Redis reads
# each), for the few people and the one Prometheus that use it.
INTERNAL_THREADS = 2
# Threads of the web process at most: the app's threads, the event loop (main thread), and
# METRICS_PORT's server: its event loop and its threads.
MAX_THREADS = SERVER_THREADS + 2 + INTERNAL_THREADS
# waitress's settings, each from a constant above. poll() instead of select(), which stops at
# 1024 descriptors; no `Server: waitress` header; a client's reset is its business, not a
# traceback in our logs.
WAITRESS_SETTINGS: dict[str, Any] = {
    "threads": SERVER_THREADS,
    "connection_limit": CONNECTION_LIMIT,
    "channel_timeout": IDLE_TIMEOUT_SECONDS,
    "cleanup_interval": CLEANUP_INTERVAL_SECONDS,
    "max_request_header_size": MAX_HEADER_BYTES,
    "max_request_body_size": MAX_REQUEST_BODY_BYTES,
    "asyncore_use_poll": True,
    "ident": "",
    "log_socket_errors": False,
}
# waitress's loggers go through ours (logs.configure): the loop's notes (connection limit
# reached, a client gone mid-answer) at INFO, the queue's only message (requests waiting for
# a thread) as the WARNING it is.
WAITRESS_LOG_LEVELS = {"waitress": logging.INFO, "waitress.queue": logging.WARNING}


# --- The server ------------------------------------------------------------------------------


def access_line(task: Any) -> tuple[str, ...]:
    """The arguments of one access-log line for a waitress task: client, request line, status,
    bytes sent, milliseconds. The request line is the client's text, escaped, so it cannot
    forge log lines; a request too broken to parse shows as `-`."""
    request = task.request
    # A request refused while parsing may lack any of these.
    command, path = getattr(request, "command", None), getattr(request, "path", "")
    query, version = getattr(request, "query", ""), getattr(request, "version", "")
    target = f"{path}?{reconcile.without_token(str(query))}" if query else str(path)
    line = f"{command} {target} HTTP/{version}" if command else "-"
    client = task.channel.addr[0] if task.channel.addr else "-"
    elapsed_ms = (wall_clock() - task.start_time) * 1000 if task.start_time else 0.0
    return (
        escape_controls(str(client)),
        escape_controls(line),
        task.status.split(" ", 1)[0],
        str(task.content_bytes_written),
        f"{elapsed_ms:.1f}",
    )


def log_access(task: Any) -> None:
    """One INFO line per request answered, in the project's log format."""
    logger.info('%s "%s" %s %s %sms', *access_line(task))


class _LoggedTask(WSGITask):
    """A request answered by the app, then logged. An app that raised is not logged here: the
    500 waitress answers instead is (`_LoggedErrorTask`)."""

    def service(self) -> None:
        super().service()
        log_access(self)


class _LoggedErrorTask(ErrorTask):
    """A request waitress refused itself (400, 413, 431, 500), then logged."""

    def service(self) -> None:
        super().service()
        log_access(self)


class _DeadlineChannel(HTTPChannel):
    """A connection that notes when the request it is receiving began, so one that is still
    arriving REQUEST_DEADLINE_SECONDS later can be dropped however steadily it trickles."""

    task_class = _LoggedTask
    error_task_class = _LoggedErrorTask
    # time.monotonic() of the first byte of the request being received; None between requests.
    request_started: float | None = None

    def received(self, data: bytes) -> bool:
        """waitress's parsing, noting when a new request starts and when none is pending."""
        before = self.request
        result = bool(super().received(data))
        if self.request is None:
            self.request_started = None
        elif self.request is not before:
            self.request_started = time.monotonic()
        return result

    def late(self, now: float) -> bool:
        """True when a request has been arriving for longer than REQUEST_DEADLINE_SECONDS."""
        started = self.request_started
        return started is not None and now - started > REQUEST_DEADLINE_SECONDS

    def in_flight(self) -> bool:
        """True while a request is arriving, being answered, or its answer is being sent."""
        return bool(self.request is not None or self.requests or self.total_outbufs_len)


class WebhookServer(TcpWSGIServer):
    """waitress's TCP server (what `waitress.create_server` builds for one address) with our
    connections: a whole-request deadline, an access log, and a stop that lets requests in
    flight finish."""

    channel_class = _DeadlineChannel

    def __init__(self, app: WSGIApp, host: str, port: int, threads: int = SERVER_THREADS) -> None:
        self.socket_map: dict[int, Any] = {}
        options = {**WAITRESS_SETTINGS, "threads": threads}
        super().__init__(app, map=self.socket_map, host=host, port=port, **options)

    def maintenance(self, now: float) -> None:
        """waitress's idle timeout, then our deadline for requests still arriving."""
        super().maintenance(now)
        clock = time.monotonic()
        for channel in list(self.active_channels.values()):
            if channel.late(clock) and not channel.requests:
                channel.will_close = True

    def stop_accepting(self) -> None:
        """Close the listening socket and idle keep-alive connections; requests in flight
        stay (the trigger that wakes the loop for their answers stays too)."""
        wasyncore.dispatcher.close(self)
        for channel in list(self.active_channels.values()):
            if not channel.in_flight():
                channel.will_close = True

    def in_flight(self) -> int:
        """Connections with a request arriving, being answered or being sent."""
        return sum(1 for channel in list(self.active_channels.values()) if channel.in_flight())

    def run_until(self, stop: threading.Event) -> None:
        """Serve until `stop` is set, then until the requests in flight are answered (at most
        SHUTDOWN_GRACE_SECONDS), then close everything and join the threads."""
        while not stop.is_set():
            self._turn()
        self.stop_accepting()
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        # The listening socket's readable() no longer runs the checks: run them here.
        while self.in_flight() and time.monotonic() < deadline:
            self._turn()
            self.maintenance(wall_clock())
        left = self.in_flight()
        if left:
            logger.warning("Stopping with %d request(s) still in flight", left)
        self._turn()  # close what was marked to close
        self.task_dispatcher.shutdown(cancel_pending=True, timeout=THREADS_JOIN_SECONDS)
        self.trigger.close()
        wasyncore.close_all(self.socket_map)

    def _turn(self) -> None:
        wasyncore.loop(timeout=LOOP_TICK_SECONDS, use_poll=True, map=self.socket_map, count=1)


def route_server_logs() -> None:
    """Send waitress's loggers through ours (no handlers of their own, our format), each at a
    level worth reading; their messages may quote a client's path, so controls are escaped."""
    for name, level in WAITRESS_LOG_LEVELS.items():
        library = logging.getLogger(name)
        library.handlers[:] = []
        library.propagate = True
        library.setLevel(level)
        if not any(isinstance(f, logs.EscapeControls) for f in library.filters):
            library.addFilter(logs.EscapeControls())


def _parse_args(argv: list[str] | None, settings: Settings) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Receiver of Akool's webhook callbacks.")
    # All interfaces by default: a platform's router reaches the process on $PORT.
    parser.add_argument("--host", default="0.0.0.0")  # noqa: S104
    parser.add_argument("--port", type=int, default=settings.port)
    return parser.parse_args(argv)


def serve(app: WebhookApp, host: str, port: int, internal: WebhookServer | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then finish the requests in flight and return; print a
    READY line once listening. `internal` (METRICS_PORT's server) runs beside, in a thread."""
    route_server_logs()
    server = WebhookServer(app, host, port)
    stop = threading.Event()
    beside = threading.Thread(target=internal.run_until, args=(stop,)) if internal else None

    def _stop(signum: int, _frame: object) -> None:
        logger.info("Webhook receiver got signal %s; finishing the requests in flight", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    print(f"WEBHOOK READY http://{host}:{server.effective_port}{CALLBACK_PATH}", flush=True)
    if beside is not None:
        beside.start()
    server.run_until(stop)
    if beside is not None:
        beside.join(SHUTDOWN_GRACE_SECONDS + THREADS_JOIN_SECONDS)
    logger.info("Webhook receiver stopped")


def internal_server(settings: Settings, host: str, port: int) -> WebhookServer | None:
    """METRICS_PORT's server: /metrics, and the dashboard when DASHBOARD_USER is set. None,
    logged as an error, when the port is taken: the process goes on with its real work."""
    app = dashboard_app.build_internal_app(settings, retry=retry_job)
    try:
        server = WebhookServer(app, host, port, threads=INTERNAL_THREADS)
    except OSError as e:
        logger.error("METRICS_PORT %d cannot be served (%s): no /metrics here", port, e)
        return None
    shown = "/metrics and the jobs dashboard" if settings.dashboard_user else "/metrics"
    logger.info("Serving %s on %s:%d", shown, host, port)
    return server


def main(argv: list[str] | None = None) -> None:
    """`python -m worker.web.server [--host H] [--port P]`: settings from the environment; /metrics
    on METRICS_PORT (same host) when it is set."""
    try:
        settings = deps.settings()
        logs.configure(settings.log_format)
        args = _parse_args(argv, settings)
        preflight.check_redis_keeps_jobs(deps.redis_client())
        app = build_app(settings)
    except ConfigError as e:
        sys.exit(f"lipsync web: {e}")
    internal = None
    if settings.metrics_port is not None:
        internal = internal_server(settings, args.host, settings.metrics_port)
    serve(app, args.host, args.port, internal)
