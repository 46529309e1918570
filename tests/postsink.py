"""A local HTTP endpoint for tests: records the JSON bodies POSTed to it and answers the
statuses a test scripts first, then 200. Stands in for an application's notify_url or a
webhook receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class PostSink(BaseHTTPRequestHandler):
    """Each sink is a subclass of its own (see `post_sink`), holding its lists."""

    answers: list[int] = []
    bodies: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length") or 0)
        type(self).bodies.append(json.loads(self.rfile.read(length)))
        status = type(self).answers.pop(0) if type(self).answers else 200
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def post_sink(path: str) -> Iterator[tuple[str, type[PostSink]]]:
    """Serve a fresh sink on 127.0.0.1; yield its URL (with `path`) and its handler class."""
    handler = type("Sink", (PostSink,), {"answers": [], "bodies": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}{path}", handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
