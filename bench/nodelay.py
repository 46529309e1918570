"""moto's S3 server with Nagle's algorithm off (TCP_NODELAY on accepted sockets), for the
Celery benches.

    python -m bench.nodelay moto [moto.server arguments]

moto's werkzeug handler writes a response's headers and body in separate send() calls with
Nagle's algorithm on, so the body of a small answer waits for the client's delayed ACK
(40 ms on Linux): about 40 ms per S3 request against the local stack, which real S3 does not
cost. The Akool simulator turns Nagle off itself (worker/dev/simulator/http_base.py). The
engine bench's stock row starts moto as shipped.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> None:
    """Run the server named by ``argv[0]`` with the rest of ``argv`` as its arguments."""
    which, rest = argv[0], argv[1:]
    if which == "moto":
        from moto import server
        from werkzeug import serving

        serving.WSGIRequestHandler.disable_nagle_algorithm = True
        server.main(rest)
    else:
        raise SystemExit(f"unknown server {which!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
