"""The download side of a copy into S3: a file-like view of the result's HTTP stream that
counts, hashes and checks what arrives, and cuts off a host that trickles.

boto3's managed upload reads the video from `StreamReader` part by part; any error raised
here makes s3transfer abort the multipart upload, so a broken copy never becomes the
object. The reader takes what the socket has (`read1`), so its checks run as bytes arrive:
- the size limit (ARCHIVE_MAX_BYTES) while streaming;
- the length the host announced, at the end (a short body is a DownloadError).
Beside it, `watched` runs the rate floor (`RateFloor`) from a thread of its own, once a
second: a download bringing fewer than DOWNLOAD_MIN_BYTES_PER_SECOND a second over the last
DOWNLOAD_RATE_WINDOW_SECONDS is cut off (DownloadError, tried again later), also while a
read is blocked on a silent socket. So a host that trickles holds an archive slot for a
window, not for the archive's time limit. `stop_copies` cuts every copy off at shutdown.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator

import requests
from urllib3.exceptions import HTTPError as Urllib3Error

from worker.errors import DownloadError, SourceRefusedError
from worker.net import ascii_int, sever

# Samples a rate floor keeps per window: the rate is measured over the window and at most
# a sixteenth more.
RATE_SAMPLES_PER_WINDOW = 16
# How often the floor is checked, at most: a trickle is cut off within this of its window.
RATE_CHECK_SECONDS = 1.0

# Set in a pool process whose task Celery cancels at shutdown: a running copy stops at once
# (its download is cut off), so s3transfer aborts the multipart upload rather than finishing
# a copy that nobody would record. The job's message goes back to the queue.
_stopping = threading.Event()
_streaming: set[requests.Response] = set()


def stop_copies() -> None:
    """Stop every copy this process is making (safe to call from a signal handler)."""
    _stopping.set()
    for response in list(_streaming):
        sever(response)


@contextlib.contextmanager
def streaming(response: requests.Response) -> Iterator[None]:
    """While the block copies `response`, `stop_copies` can cut it off; closed afterwards."""
    _streaming.add(response)
    try:
        yield
    finally:
        _streaming.discard(response)
        response.close()


class RateFloor:
    """Judges a download too slow when it brought fewer than `min_rate` bytes a second
    over the last `window` seconds (once it has run that long). `min_rate` 0: never."""

    def __init__(
        self, min_rate: float, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.min_rate = min_rate
        self.window = window
        self._clock = clock
        self._step = window / RATE_SAMPLES_PER_WINDOW
        self._samples: deque[tuple[float, int]] = deque([(clock(), 0)])

    def too_slow(self, size: int) -> str | None:
        """After `size` bytes in all: why the last window brought too few, or None."""
        now = self._clock()
        if now - self._samples[-1][0] >= self._step:
            self._samples.append((now, size))
        while len(self._samples) > 1 and now - self._samples[1][0] >= self.window:
            self._samples.popleft()
        since, then = self._samples[0]
        lasted = now - since
        if self.min_rate <= 0 or lasted < self.window or size - then >= self.min_rate * lasted:
            return None
        return (
            f"the file host sent {size - then} bytes in {lasted:.0f} s, under "
            f"DOWNLOAD_MIN_BYTES_PER_SECOND ({self.min_rate:g} a second over "
            "DOWNLOAD_RATE_WINDOW_SECONDS); cut off, to be tried again"
        )


class StreamReader:
    """A file-like view of a download for boto3: counts, hashes and checks the length and
    the size limit as bytes arrive; `cut_off` makes it fail with a reason."""

    def __init__(
        self,
        response: requests.Response,
        url: str,
        max_bytes: int,
        *,
        part_size: int,
        on_progress: Callable[[int, int | None], None] | None = None,
    ) -> None:
        self._raw = response.raw
        self._on_progress = on_progress
        self._url = url
        self._max = max_bytes
        self._part_size = part_size
        self._cut: str | None = None
        # A Content-Length that is not ASCII digits (a superscript "2") counts as unknown;
        # the size limit still holds while streaming.
        self._expected = ascii_int(response.headers.get("Content-Length", ""))
        self.size = 0
        self.digest = hashlib.sha256()

    def cut_off(self, reason: str) -> None:
        """From now on every read fails with `reason` (the caller cuts the stream)."""
        self._cut = reason

    def read(self, amount: int = -1) -> bytes:
        """Up to `amount` bytes of the video (b"" at its end), counted, hashed and checked."""
        wanted = amount if amount and amount > 0 else self._part_size
        chunks: list[bytes] = []
        got = 0
        while got < wanted:
            chunk = self._next(wanted - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if not got:
            self._check_complete()
        return b"".join(chunks)

    def _next(self, most: int) -> bytes:
        """What the socket has (at most `most` bytes), accounted for."""
        self._check_going()
        try:
            chunk = self._raw.read1(most, decode_content=True)
        except Exception as e:
            # A cut-off (the rate floor, a cancel, a shutdown) closes the response from
            # another thread while this read is woken, and http.client may then fail in any
            # way (an AttributeError on the file object that thread just set to None): that
            # is the cut-off's error. Anything else unexpected is not ours to rename.
            self._check_going()
            if not isinstance(e, Urllib3Error | OSError):
                raise
            raise DownloadError(
                f"the download broke off after {self.size} bytes", url=self._url
            ) from e
        self._check_going()
        if chunk:
            self._account(chunk)
        return chunk

    def _check_going(self) -> None:
        if _stopping.is_set():
            raise DownloadError("the copy was stopped: the worker is shutting down", url=self._url)
        if self._cut is not None:
            raise DownloadError(self._cut, url=self._url)

    def _account(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self._max:
            raise SourceRefusedError(
                f"the video is larger than ARCHIVE_MAX_BYTES ({self._max} bytes)", url=self._url
            )
        self.digest.update(chunk)
        if self._on_progress is not None:
            self._on_progress(self.size, self._expected)

    def _check_complete(self) -> None:
        if self._expected is not None and self.size != self._expected:
            raise DownloadError(
                f"the download ended after {self.size} of {self._expected} bytes",
                url=self._url,
            )


@contextlib.contextmanager
def watched(
    response: requests.Response,
    reader: StreamReader,
    floor: RateFloor,
    stopped: Callable[[], str | None] | None = None,
) -> Iterator[None]:
    """While the block copies, check the rate floor from a thread of its own (every
    RATE_CHECK_SECONDS or a sixteenth of the window) and cut a trickling download off, or
    one that `stopped` gives a reason to stop."""
    stop = threading.Event()
    interval = min(RATE_CHECK_SECONDS, floor.window / RATE_SAMPLES_PER_WINDOW)

    def watch() -> None:
        while not stop.wait(interval):
            reason = floor.too_slow(reader.size) or (stopped() if stopped else None)
            if reason is not None:
                reader.cut_off(reason)
                sever(response)
                return

    thread = threading.Thread(target=watch, name="rate-floor", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=interval * 5)
