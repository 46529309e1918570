"""Serving a job's generated video at ``/files/<id>.mp4``, with its scripted faults.

A download can be redirected (``sim_redirect``), refused with an HTTP error (``sim_file``,
for the first ``sim_file_times`` downloads), a dead link (one of the first
``sim_file_gone_urls`` URLs handed out, by its ``?v=`` number), held back
(``sim_file_delay``), streamed slowly (``sim_file_rate`` bytes a second, for the first
``sim_file_rate_times`` downloads) or cut off halfway (``sim_truncate_times``); otherwise
the job's generated content (see ``content``) is streamed in chunks.

A video translation's extra result files are served at ``/assets/<id>/<name>`` (see
``kinds.ASSET_FILES``), whole and without scripted faults.
"""

from __future__ import annotations

import logging
import time

from worker.dev.simulator.content import ASSET_TYPES, asset_content, generate_content
from worker.dev.simulator.http_base import SimHTTPHandler
from worker.dev.simulator.kinds import ASSET_FILES, KINDS
from worker.dev.simulator.scenario import within
from worker.dev.simulator.state import SimJob

logger = logging.getLogger(__name__)

# The answer to a download scripted with ``sim_file=<mode>``.
FILE_ERRORS = {
    "expired": (410, b"expired"),
    "gone": (404, b"not found"),
    "forbidden": (403, b"forbidden"),
}


class DownloadHandler(SimHTTPHandler):
    """Request handler that can serve the jobs' generated videos."""

    def _handle_file(self, job_id: str, version: int | None = None) -> None:
        """GET /files/<id>.mp4?v=<n>: stream the job's generated video."""
        job = self.state.get_job(job_id)
        if job is None:
            self._send_bytes(404, b"not found", "text/plain")
            return
        with self.state.lock:
            job.downloads += 1
            self.state.downloads += 1
            count = job.downloads
        if job.scenario.redirect:
            self._send_redirect(job.scenario.redirect)
            return
        if version is not None and version <= job.scenario.file_gone_urls:
            self._send_bytes(*FILE_ERRORS["gone"], "text/plain")
            return
        if job.scenario.file in FILE_ERRORS and within(count, job.scenario.file_times):
            status, text = FILE_ERRORS[job.scenario.file]
            self._send_bytes(status, text, "text/plain")
            return
        rate = job.scenario.file_rate if within(count, job.scenario.file_rate_times) else None
        self._stream_file(job, truncate=count <= job.scenario.truncate_times, rate=rate)

    def _handle_asset(self, job_id: str, name: str) -> None:
        """GET /assets/<id>/<name>: one of the job's extra result files, if its kind has it."""
        job = self.state.get_job(job_id)
        fields = KINDS[job.kind].assets if job is not None else ()
        if job is None or name not in {ASSET_FILES[f] for f in fields}:
            self._send_bytes(404, b"not found", "text/plain")
            return
        with self.state.lock:
            self.state.asset_downloads += 1
        content_type = ASSET_TYPES[name[name.rindex(".") :]]
        size = job.size
        if name.endswith(".srt"):
            self._send_bytes(200, b"".join(asset_content(job_id, name, size)), content_type)
            return
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        for chunk in asset_content(job_id, name, size):
            self.wfile.write(chunk)
        self.wfile.flush()

    def _send_redirect(self, location: str) -> None:
        """Answer 302 to ``location``, with an empty body."""
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _stream_file(self, job: SimJob, truncate: bool, rate: int | None = None) -> None:
        """Send the job's content in chunks; when ``truncate``, stop halfway and close; with
        ``rate``, at about that many bytes a second."""
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(job.size))
        if truncate:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.flush()
        if job.scenario.file_delay > 0:
            time.sleep(job.scenario.file_delay)
        limit = job.size // 2 if truncate else job.size
        sent, started = 0, time.monotonic()
        for chunk in generate_content(job.job_id, job.size):
            piece = chunk[: limit - sent]
            self.wfile.write(piece)
            sent += len(piece)
            if sent >= limit:
                break
            if rate:
                time.sleep(max(0.0, started + sent / rate - time.monotonic()))
        self.wfile.flush()
        if truncate:
            logger.info("simulator truncated download of job %s at %s bytes", job.job_id, sent)
            self.close_connection = True
