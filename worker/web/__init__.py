"""The web process (`python -m worker.web`): the WSGI app (app), the waitress server that
runs it (server), Akool's webhook receiver (callbacks) and the jobs dashboard (dashboard/)."""
