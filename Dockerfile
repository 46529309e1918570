# One image for every process kind: worker (akool, archive), beat, web, flower.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY worker ./worker
COPY config ./config
COPY Procfile ./
RUN pip install --no-cache-dir ".[flower]" && useradd --create-home lipsync
USER lipsync
# Fewer malloc arenas: each upload thread otherwise keeps its own (measured in bench/:
# 8-20 MiB less per archive process).
ENV PYTHONUNBUFFERED=1 MALLOC_ARENA_MAX=2
CMD ["celery", "-A", "worker.celery_app", "worker", "-Q", "lipsync.akool,lipsync.archive", "--loglevel", "INFO"]
