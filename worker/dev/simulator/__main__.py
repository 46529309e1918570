"""Entry point of ``python -m worker.dev.simulator``; the options are in ``cli``."""

from worker.dev.simulator.cli import main

main()
