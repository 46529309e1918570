"""The command line of ``python -m worker.dev.simulator``: options, and serving until a signal.

``main`` prints ``SIMULATOR READY <base url>`` once listening (worker/dev/stack.py and the
benches wait for the server to answer) and stops cleanly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from worker.dev.simulator.server import Simulator
from worker.dev.simulator.state import SimulatorConfig

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DESCRIPTION = """\
Simulator of Akool's lip-sync API (getToken, submit, poll, the result videos and the
/_sim test controls), each job scripted by sim_* parameters on its video_url.

The result URLs name the address the simulator is bound to (127.0.0.1 when bound to all
interfaces), unless --file-host says otherwise. That is a loopback (or private) address,
which a wildcard in ARCHIVE_ALLOWED_HOSTS never allows: a worker archiving the results must
list the simulator's host exactly in ARCHIVE_ALLOWED_HOSTS, e.g. ARCHIVE_ALLOWED_HOSTS=127.0.0.1.
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; ``--help`` shows each option's default."""
    defaults = SimulatorConfig()
    parser = argparse.ArgumentParser(
        prog="python -m worker.dev.simulator",
        description=DESCRIPTION,
        # Raw description: keep the paragraphs above as written.
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port to bind, 0 for any free one (default: %(default)s)",
    )
    parser.add_argument(
        "--api-key", default=defaults.api_key, help="accepted x-api-key (default: %(default)s)"
    )
    parser.add_argument(
        "--client-id",
        default=defaults.client_id,
        help="clientId accepted by getToken, and the callbacks' IV (default: %(default)s)",
    )
    parser.add_argument(
        "--client-secret",
        default=defaults.client_secret,
        help="clientSecret accepted by getToken, and the callbacks' AES key: callbacks are "
        "sent only when it is 16, 24 or 32 bytes long (default: %(default)s)",
    )
    parser.add_argument(
        "--size",
        type=int,
        default=defaults.default_size,
        help="bytes of a result video without sim_size (default: %(default)s)",
    )
    parser.add_argument(
        "--file-host",
        default=None,
        help="host:port used in result URLs (default: the simulator's own host:port)",
    )
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Parse the command line of ``python -m worker.dev.simulator``."""
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the simulator until SIGTERM or SIGINT; print a READY line once listening."""
    args = parse_args(argv)
    config = SimulatorConfig(
        api_key=args.api_key,
        client_id=args.client_id,
        client_secret=args.client_secret,
        default_size=args.size,
        file_host=args.file_host,
    )
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        logger.info("simulator received signal %s, stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    simulator = Simulator(config, host=args.host, port=args.port).start()
    print(f"SIMULATOR READY {simulator.base_url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        simulator.stop()
    sys.stdout.flush()
