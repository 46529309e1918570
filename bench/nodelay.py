"""The simulator or moto's S3 server with Nagle's algorithm off (TCP_NODELAY on accepted
sockets), for the Celery benches.

    python -m bench.nodelay simulator [worker.simulator arguments]
    python -m bench.nodelay moto [moto.server arguments]

Both servers are `http.server` handlers, whose `disable_nagle_algorithm` defaults to False;
they write a response's headers and body in separate send() calls, so the body of a small
answer waits for the client's delayed ACK (40 ms on Linux). That costs every Akool call and
S3 request about 40 ms against the local stack, which real Akool and S3 do not. The bench
reports the engine both ways; the one-line fix for worker/simulator.py is
`disable_nagle_algorithm = True` on its `_Handler`.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    which, rest = argv[0], argv[1:]
    if which == "simulator":
        from worker import simulator

        simulator._Handler.disable_nagle_algorithm = True
        simulator.main(rest)
    elif which == "moto":
        from moto import server
        from werkzeug import serving

        serving.WSGIRequestHandler.disable_nagle_algorithm = True
        server.main(rest)
    else:
        raise SystemExit(f"unknown server {which!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
