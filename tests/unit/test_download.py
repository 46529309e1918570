"""Tests of worker.download: the reader boto3 copies from (its checks as bytes arrive) and
the rate floor that cuts off a host that trickles, with a clock and a stream passed in."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from worker.download import RateFloor, StreamReader, watched
from worker.errors import DownloadError, SourceRefusedError

WINDOW = 60.0
FLOOR = 64 * 1024.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Raw:
    """urllib3's response as the reader sees it: `read1` answers the chunks given, then b"";
    with `block`, a read waits until the stream is closed (a silent host)."""

    def __init__(self, chunks: list[bytes], block: bool = False) -> None:
        self.chunks = list(chunks)
        self.block = block
        self.closed = threading.Event()
        self.sizes: list[int] = []

    def read1(self, amount: int, decode_content: bool = True) -> bytes:
        self.sizes.append(amount)
        if self.chunks:
            return self.chunks.pop(0)[:amount]
        if self.block:
            self.closed.wait(10)
            raise OSError("the connection was closed")
        return b""


class Response:
    def __init__(self, raw: Raw, length: int | None = None) -> None:
        self.raw = raw
        self.headers = {} if length is None else {"Content-Length": str(length)}

    def close(self) -> None:
        self.raw.closed.set()


def reader(raw: Raw, length: int | None = None, **options: Any) -> StreamReader:
    options.setdefault("part_size", 100)
    options.setdefault("max_bytes", 10_000)
    response: Any = Response(raw, length)
    return StreamReader(response, "https://cdn.example/x.mp4", options.pop("max_bytes"), **options)


# --- the rate floor ------------------------------------------------------------------------


def test_a_download_at_the_floor_or_faster_is_never_too_slow() -> None:
    clock = Clock()
    floor = RateFloor(FLOOR, WINDOW, clock)
    for second in range(1, 300):
        clock.now += 1
        assert floor.too_slow(int(FLOOR * second)) is None


def test_a_trickle_under_the_floor_is_judged_once_it_lasted_the_window() -> None:
    clock = Clock()
    floor = RateFloor(FLOOR, WINDOW, clock)
    verdicts = []
    for second in range(1, 62):
        clock.now += 1
        verdicts.append(floor.too_slow(32_000 * second))
    assert all(v is None for v in verdicts[:59])
    reason = verdicts[-1]
    assert reason is not None and "DOWNLOAD_MIN_BYTES_PER_SECOND" in reason


def test_a_burst_then_silence_is_too_slow_within_a_window_of_the_silence() -> None:
    # A whole megabyte at once, then nothing: the rate of the last window is what counts.
    clock = Clock()
    floor = RateFloor(FLOOR, WINDOW, clock)
    clock.now += 0.5
    assert floor.too_slow(8 * 1024 * 1024) is None
    judged = None
    for _ in range(70):
        clock.now += 1
        judged = judged or floor.too_slow(8 * 1024 * 1024)
        if judged:
            break
    assert judged is not None and clock.now - 1000.0 <= WINDOW + WINDOW / 16 + 1


def test_a_floor_of_zero_never_cuts_anything() -> None:
    clock = Clock()
    floor = RateFloor(0, WINDOW, clock)
    clock.now += 10 * WINDOW
    assert floor.too_slow(0) is None


# --- the reader ----------------------------------------------------------------------------


def test_a_read_takes_what_the_socket_has_until_it_holds_the_part() -> None:
    raw = Raw([b"a" * 30, b"b" * 50, b"c" * 40])
    stream = reader(raw)
    assert stream.read(100) == b"a" * 30 + b"b" * 50 + b"c" * 20
    assert raw.sizes == [100, 70, 20]
    assert stream.size == 100


def test_progress_is_told_as_bytes_arrive() -> None:
    seen: list[tuple[int, int | None]] = []
    stream = reader(Raw([b"x" * 10, b"y" * 10]), 20, on_progress=lambda d, t: seen.append((d, t)))
    assert stream.read(50) == b"x" * 10 + b"y" * 10
    assert seen == [(10, 20), (20, 20)]


def test_a_body_shorter_than_announced_is_a_download_error_at_its_end() -> None:
    stream = reader(Raw([b"x" * 10]), 25)
    assert stream.read(100) == b"x" * 10
    with pytest.raises(DownloadError, match="ended after 10 of 25 bytes"):
        stream.read(100)


def test_a_video_over_the_limit_is_refused_while_it_streams() -> None:
    stream = reader(Raw([b"x" * 60, b"y" * 60]), max_bytes=100)
    with pytest.raises(SourceRefusedError, match="ARCHIVE_MAX_BYTES"):
        stream.read(200)


def test_a_reader_cut_off_fails_with_the_reason() -> None:
    stream = reader(Raw([b"x" * 10, b"y" * 10]))
    stream.cut_off("too slow")
    with pytest.raises(DownloadError, match="too slow"):
        stream.read(100)


class ClosedUnderTheRead(Raw):
    """A read woken by a cut-off from another thread, failing inside http.client as it does
    when that thread closed the response meanwhile (its file object set to None)."""

    def __init__(self) -> None:
        super().__init__([])
        self.stream: StreamReader | None = None

    def read1(self, amount: int, decode_content: bool = True) -> bytes:
        assert self.stream is not None
        self.stream.cut_off("the job was cancelled")
        raise AttributeError("'NoneType' object has no attribute 'close'")


def test_a_read_failing_in_any_way_after_a_cut_off_fails_with_the_cut_offs_reason() -> None:
    raw = ClosedUnderTheRead()
    stream = raw.stream = reader(raw)
    with pytest.raises(DownloadError, match="the job was cancelled"):
        stream.read(100)


def test_an_unexpected_error_of_a_read_nobody_cut_off_is_not_renamed() -> None:
    class Broken(Raw):
        def read1(self, amount: int, decode_content: bool = True) -> bytes:
            raise AttributeError("a bug")

    with pytest.raises(AttributeError, match="a bug"):
        reader(Broken([])).read(100)


def test_the_watch_cuts_off_a_read_blocked_on_a_silent_host() -> None:
    raw = Raw([b"x" * 10], block=True)
    stream = reader(raw)
    response: Any = Response(raw)
    floor = RateFloor(FLOOR, 0.2)  # the real clock: a window of 0.2 s
    started = time.monotonic()
    with (
        pytest.raises(DownloadError, match="DOWNLOAD_MIN_BYTES_PER_SECOND"),
        watched(response, stream, floor),
    ):
        stream.read(100)
    assert time.monotonic() - started < 5
    assert raw.closed.is_set()
