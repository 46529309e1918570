# Two images from one file. `app` (the default, last stage) runs every process kind but
# Flower: worker (akool, archive), beat, web. `flower` adds Flower on top of it.
# Dependencies come from the lock files only (exact versions, hashes checked, nothing
# resolved at build time); the project itself goes in after them with --no-deps.
# An exact Python release, chosen without registry access (no digest could be looked up).
FROM python:3.11.11-slim-bookworm AS base
WORKDIR /app
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY config ./config
COPY Procfile ./
RUN pip install --no-deps . && useradd --create-home lipsync
USER lipsync
# Fewer malloc arenas: each upload thread otherwise keeps its own (measured in bench/:
# 8-20 MiB less per archive process). REMAP_SIGTERM=SIGQUIT, as the Procfile's worker: on
# SIGTERM a worker hands its running tasks back within seconds instead of waiting for them
# (worker/celery_app.py, "Graceful shutdown"); only Celery workers read it.
ENV PYTHONUNBUFFERED=1 MALLOC_ARENA_MAX=2 REMAP_SIGTERM=SIGQUIT

# The Celery dashboard: the app image plus requirements-flower.lock (Flower, tornado, ...).
FROM base AS flower
USER root
COPY requirements-flower.lock ./
RUN pip install --require-hashes --no-deps -r requirements-flower.lock
USER lipsync
CMD ["celery", "-A", "worker.celery_app", "flower", "--port=5555"]

FROM base AS app
CMD ["celery", "-A", "worker.celery_app", "worker", "-Q", "lipsync.akool,lipsync.archive", "--loglevel", "INFO"]
