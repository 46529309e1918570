"""The web process (`python -m worker.web`): the server (server), Akool's webhook receiver
(callbacks) and the jobs dashboard (dashboard/)."""
