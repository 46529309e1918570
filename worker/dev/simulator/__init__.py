"""HTTP simulator of Akool's video API, for tests, the demo and the benches.

It serves lip-sync and its sibling kinds (talking photo, video translation, talking avatar,
character swap: one row each in ``kinds.KINDS``), each at its own submit path with its own
body checks (code 1003 for a bad body), all sharing the auth, the ``infobymodelid`` lookup
and the callbacks. Each job's behaviour is scripted by ``sim_*`` query parameters on its
kind's scripting URL (lip-sync's ``video_url``; talking photo's ``talking_photo_url``,
translation's ``url``, the avatar's first element's ``url``, character swap's ``video``);
the URL itself is never fetched. See ``scenario.Scenario`` for the list. A video
translation's lookup also answers ``progress``, at status 3 ``audio_splits`` (two SRT files
and a no-caption MP4, served under ``/assets/<id>/``) and at status 4 ``error_code`` and
``error_reason`` (``sim_error_code``, ``sim_error_reason``).

When a submit names a ``webhookUrl`` (``webhookurl`` for character swap), the simulator also
POSTs Akool's encrypted, signed callback to it (from a background thread, a few tries while
the answer is not 200) once the job's final status is reached: after ``sim_seconds`` plus
``sim_webhook_delay``, whatever the polls answer, so ``?sim_polls=1000&sim_seconds=1`` is a
job whose polls keep saying 2 while the callback says it is done. ``sim_webhook_progress=1``
also sends a status 2 callback at once; ``sim_webhook=0`` sends none. The payload (its
``type`` the kind's) is encrypted with the client secret (16, 24 or 32 bytes; with another
length no callback is sent) and the client id as IV (see worker/akool/crypto.py).

Controls for tests, under ``/_sim``: ``GET /_sim/stats`` (counters), ``GET /_sim/jobs/<id>``,
``POST /_sim/reset``, ``POST /_sim/revoke-tokens``, ``POST /_sim/rate-limit`` with
``{"per_second": N}`` (0 or null: off), which answers code 1005 to any submit or poll beyond
N in the current one-second window, as Akool does when requests come too often, and
``POST /_sim/outage`` with ``{"status": 503, "seconds": 40}``, which answers that HTTP status
to every Akool request (getToken, submit, poll) for that long, as during an outage.

Run it standalone with ``python -m worker.dev.simulator --port 8080`` (``--help`` lists the
options and their defaults).

Modules: ``kinds`` (the table of kinds and their body checks), ``scenario`` (the ``sim_*``
parameters), ``content`` (the generated videos and subtitles), ``state`` (configuration,
jobs and counters), ``callbacks`` (webhook callbacks), ``http_base`` (HTTP answers, Nagle
off), ``downloads`` (``/files/<id>.mp4`` and ``/assets/<id>/<name>``), ``handler`` (Akool's
endpoints and ``/_sim``), ``server`` (``Simulator``) and ``cli`` (the command line).
This package re-exports what tests and tools import.
"""

from __future__ import annotations

from worker.dev.simulator.callbacks import WEBHOOK_ATTEMPTS
from worker.dev.simulator.cli import main
from worker.dev.simulator.content import content_sha256, generate_content
from worker.dev.simulator.handler import SimulatorHandler
from worker.dev.simulator.scenario import Scenario, parse_scenario
from worker.dev.simulator.server import Simulator
from worker.dev.simulator.state import SimJob, SimState, SimulatorConfig

__all__ = [
    "WEBHOOK_ATTEMPTS",
    "Scenario",
    "SimJob",
    "SimState",
    "Simulator",
    "SimulatorConfig",
    "SimulatorHandler",
    "content_sha256",
    "generate_content",
    "main",
    "parse_scenario",
]
