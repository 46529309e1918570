"""The jobs dashboard: server-rendered pages about jobs on the web process's internal port.

Served next to `/metrics` on METRICS_PORT (never on the public $PORT) by the app in
`worker/web/dashboard/app.py`, behind HTTP basic auth (DASHBOARD_USER, DASHBOARD_PASSWORD) and
off (404) without them. The plain parts, each tested alone: `auth` (credentials, CSRF
tokens), `timeline` (a job's events), `reads` (bounded reads from Redis).
"""
