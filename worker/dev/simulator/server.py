"""``Simulator``: one simulator instance, bound, served from a background thread, stopped.

It is what tests use in-process and what ``python -m worker.dev.simulator`` runs; it ties
the shared state, the threading server (``http_base``) and the handler (``handler``).
"""

from __future__ import annotations

import logging
import threading

from worker.dev.simulator.handler import SimulatorHandler
from worker.dev.simulator.http_base import SimServer
from worker.dev.simulator.state import SimState, SimulatorConfig

logger = logging.getLogger(__name__)


class Simulator:
    """An Akool lip-sync API simulator served from a background thread."""

    def __init__(
        self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        """Bind the server (port 0 picks a free port); call ``start`` to serve."""
        self.config = config or SimulatorConfig()
        self.state = SimState(self.config)
        self._server = SimServer((host, port), SimulatorHandler, self.state)
        self._thread: threading.Thread | None = None
        bound_host = str(self._server.server_address[0])
        self.host = "127.0.0.1" if bound_host in ("0.0.0.0", "", "::") else bound_host  # noqa: S104
        self.port = int(self._server.server_address[1])
        self.state.file_host = self.config.file_host or f"{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """Base URL of the simulator, e.g. ``http://127.0.0.1:41234``."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Simulator:
        """Serve in a daemon thread and return self."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="akool-simulator",
                daemon=True,
            )
            self._thread.start()
            logger.info("simulator listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving (and sending callbacks) and release the socket."""
        self.state.stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()
