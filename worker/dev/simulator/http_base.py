"""How the simulator speaks HTTP: its threading server and the base of its request handler.

``SimServer`` carries the shared ``SimState`` to the handlers and logs clients that went away
quietly. ``SimHTTPHandler`` owns what every simulated answer shares: Nagle's algorithm off,
HTTP/1.1 keep-alive, the JSON, Akool-envelope and HTML-error answers, reading a JSON body,
and per-request logging at debug level. The endpoints are in ``downloads`` and ``handler``.
"""

from __future__ import annotations

import json
import logging
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

from worker.dev.simulator.state import SimState

logger = logging.getLogger(__name__)

HTML_ERROR = b"<html><body>Bad gateway</body></html>"


class SimServer(ThreadingHTTPServer):
    """ThreadingHTTPServer carrying the simulator state."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[SimHTTPHandler],
        state: SimState,
    ) -> None:
        """Bind to ``address``, serve with ``handler`` and keep ``state`` for it."""
        super().__init__(address, handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a client that went away at debug level; other errors with a traceback."""
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            logger.debug("simulator client %s went away: %s", client_address, error)
            return
        logger.exception("simulator error while serving %s", client_address)


class SimHTTPHandler(BaseHTTPRequestHandler):
    """Request handler base: answers with a body and its length, on a kept-alive connection."""

    # http.server writes an answer's headers and its body in separate send() calls; with
    # Nagle's algorithm on, the body of a small answer waits for the client's delayed ACK
    # (~40 ms on Linux), which real Akool does not cost. TCP_NODELAY on each accepted socket
    # sends it at once.
    disable_nagle_algorithm = True

    protocol_version = "HTTP/1.1"
    server_version = "AkoolSimulator/1.0"

    @property
    def state(self) -> SimState:
        """The shared simulator state."""
        return cast(SimServer, self.server).state

    def log_message(self, format: str, *args: Any) -> None:
        """Route per-request logging to debug level instead of stderr."""
        logger.debug("simulator: " + format, *args)

    def _send_bytes(self, status: int, body: bytes, content_type: str) -> None:
        """Answer with a complete body and its Content-Length."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_json(self, payload: dict[str, Any], status: int = 200) -> None:
        """Answer a JSON document."""
        self._send_bytes(status, json.dumps(payload).encode(), "application/json")

    def _send_code(self, code: int, msg: str, data: Any = None) -> None:
        """Answer an Akool envelope ``{code, msg, data}`` with HTTP 200."""
        self._send_json({"code": code, "msg": msg, "data": data})

    def _send_html_error(self, status: int, retry_after: str | None = None) -> None:
        """Answer a non-JSON gateway error page, with a Retry-After header when given."""
        self.send_response(status)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(HTML_ERROR)))
        if retry_after is not None:
            self.send_header("Retry-After", retry_after)
        self.end_headers()
        self.wfile.write(HTML_ERROR)

    def _read_json(self) -> Any:
        """Read the request body and decode it as JSON; None when absent or invalid."""
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            return json.loads(raw) if raw else None
        except (ValueError, UnicodeDecodeError):
            return None
