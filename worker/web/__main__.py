"""`python -m worker.web`: the web process (the Procfile's `web` line)."""

from worker.web.server import main

main()
