"""A small threaded HTTP server streaming deterministic bytes: GET /bytes/<size>.

Run as `python -m bench.fileserver --port N`. The body is one pseudo-random 1 MiB block
(fixed seed) repeated and cut to `size`, written straight to the socket, so the server costs
almost no CPU and never limits the transfer being measured. `content(size)` yields the same
bytes for checking a stored copy.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import signal
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BLOCK_SIZE = 1024 * 1024
BLOCK = random.Random(20261125).randbytes(BLOCK_SIZE)
MAX_SIZE = 4 * 1024**3


def content(size: int) -> Iterator[memoryview]:
    """The bytes served for `size`, one block at a time."""
    view = memoryview(BLOCK)
    remaining = size
    while remaining > 0:
        n = min(BLOCK_SIZE, remaining)
        yield view[:n]
        remaining -= n


def content_sha256(size: int) -> str:
    digest = hashlib.sha256()
    for block in content(size):
        digest.update(block)
    return digest.hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib signature
        name = self.path.split("?", 1)[0]
        if not name.startswith("/bytes/") or not name[7:].isdigit():
            self.send_error(404)
            return
        size = int(name[7:])
        if size > MAX_SIZE:
            self.send_error(413)
            return
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        try:
            for block in content(size):
                self.wfile.write(block)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    server = _Server((args.host, args.port), _Handler)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.daemon = True
    thread.start()
    print(f"FILESERVER READY http://{args.host}:{args.port}", flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
