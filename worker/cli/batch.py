"""`lipsync submit --batch FILE.csv`: one job for each row of a CSV file.

The file is UTF-8 (a BOM is skipped). Its first line that is not blank is the header: it
names `video_url` and `audio_url`, and may name `idempotency_key`, `archive_key` and
`meta.<name>` columns, in any order. With a `kind` column, each row is of its kind (an empty
cell: lipsync) and the header names any of the kinds' arguments (worker/cli/kinds.py: e.g.
`photo_url`, `prompt` for talking_photo; `elements` is a JSON cell); a row must give what
its kind needs and nothing another kind takes. Any other column is refused. Blank lines
are skipped; an empty cell is an argument not given. At most MAX_BATCH_ROWS rows.

Every row is checked (worker/contract.py) before any is submitted: with one bad row, or two
rows claiming one idempotency key or archive key for different requests, nothing is. A row
without an idempotency key gets one derived from what it asks (`derived_key`), so the same
file run again submits nothing new; two equal rows are one job.
"""

from __future__ import annotations

import csv
import dataclasses
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from worker import deps
from worker.api import find_job
from worker.cli.kinds import ARGS, kind_request, read_args, submit_kind
from worker.cli.progress import bar, describe
from worker.contract import Request
from worker.names import LIPSYNC_KIND
from worker.status import FINAL_STATUSES, JobStatus
from worker.store import Job, JobStore

# Rows a file may have: a batch is submitted from one process, each row checked in memory.
MAX_BATCH_ROWS = 10_000
# Bad rows listed when a file is refused (the count of the others is given).
MAX_REPORTED = 100
DERIVED_KEY_PREFIX = "batch:"
# Required without a `kind` column (a file of lip-sync jobs, as before kinds).
REQUIRED_COLUMNS = ("video_url", "audio_url")
OPTIONAL_COLUMNS = ("idempotency_key", "archive_key")
KIND_COLUMN = "kind"
# Every kind's arguments, each once (kinds share video_url, audio_url, ...).
ARG_COLUMNS = tuple(dict.fromkeys(arg.name for args in ARGS.values() for arg in args))
META_PREFIX = "meta."
# How often --wait reads the statuses of the jobs still running (one pipelined round trip),
# and how often it prints a line when stderr is not a terminal.
WAIT_INTERVAL_SECONDS = 1.0
LOG_INTERVAL_SECONDS = 10.0
# Bar updates while rows are submitted (a redraw per row would flood a slow terminal).
BAR_STEPS = 200
REFUSED = "refused"
# A job whose record expired while it was followed.
GONE = "gone"
FINAL_ORDER = (JobStatus.ARCHIVED, JobStatus.FAILED, JobStatus.CANCELLED)


class BadBatch(ValueError):
    """The file cannot be submitted; nothing was. `problems` are (line, reason) pairs,
    line 0 for the file as a whole."""

    def __init__(self, name: str, problems: Sequence[tuple[int, str]]) -> None:
        self.problems = list(problems)
        shown = [f"  line {line}: {why}" if line else f"  {why}" for line, why in problems]
        more = len(shown) - MAX_REPORTED
        listed = shown[:MAX_REPORTED] + ([f"  ... and {more} more"] if more > 0 else [])
        super().__init__(f"{name}: nothing submitted:\n" + "\n".join(listed))


@dataclass(frozen=True)
class Row:
    """One row of a batch, checked: its line in the file, its request (whose idempotency
    key is the row's, or derived from the request), and its kind and the keyword arguments
    of the kind's public call."""

    line: int
    request: Request
    kind: str = LIPSYNC_KIND
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """What became of a row: its job (None when refused), the job's status (or REFUSED)
    and whether this run made the job."""

    line: int
    job_id: str | None
    status: str
    new: bool = False
    error: str | None = None


def derived_key(request: Request) -> str:
    """The idempotency key of a row that names none: the same for the same request,
    whatever the order of the file's columns (`Request.digest` leaves the key out)."""
    return DERIVED_KEY_PREFIX + request.digest


def _lines(rows: Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """The file's records that are not blank, each with the line it starts on."""
    reader = csv.reader(rows, strict=True)
    start = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise BadBatch("the file", [(start, f"not CSV: {e}")]) from e
        if any(cell.strip() for cell in cells):
            yield start, cells
        start = reader.line_num + 1


def _columns(cells: list[str], line: int) -> list[str]:
    """The header's column names, or BadBatch saying what is wrong with them."""
    names = [cell.strip() for cell in cells]
    problems = []
    allowed = (KIND_COLUMN, *OPTIONAL_COLUMNS, *ARG_COLUMNS)
    for name in names:
        if name not in allowed and not (name.startswith(META_PREFIX) and name != META_PREFIX):
            problems.append(
                f"unknown column {name!r} (the columns are {', '.join(allowed)} and "
                f"{META_PREFIX}<name>)"
            )
    problems += [f"column {n!r} is named twice" for n, c in Counter(names).items() if c > 1]
    if KIND_COLUMN not in names:
        problems += [f"the header has no {n} column" for n in REQUIRED_COLUMNS if n not in names]
    if problems:
        raise BadBatch("the file", [(line, why) for why in problems])
    return names


def row_request(columns: Sequence[str], cells: Sequence[str]) -> Request:
    """The checked request of one row; ValueError naming what is refused."""
    return read_row(0, columns, cells).request


def read_row(line: int, columns: Sequence[str], cells: Sequence[str]) -> Row:
    """One row, checked as its kind's public call checks its arguments (a lip-sync row's
    request, and so its derived key, is the one it had before kinds); ValueError naming
    what is refused."""
    if len(cells) != len(columns):
        raise ValueError(f"has {len(cells)} fields; the header names {len(columns)}")
    given = {name: cell for name, cell in zip(columns, cells, strict=True) if cell != ""}
    kind = given.pop(KIND_COLUMN, LIPSYNC_KIND).strip()
    common = {name: given.pop(name) for name in OPTIONAL_COLUMNS if name in given}
    metadata = {
        name.removeprefix(META_PREFIX): given.pop(name)
        for name in list(given)
        if name.startswith(META_PREFIX)
    }
    if kind == LIPSYNC_KIND:  # a missing URL is refused as it always was: by the check
        given = {"video_url": "", "audio_url": ""} | given
    args = read_args(kind, given, flags=False)
    request = kind_request(kind, args, metadata=metadata or None, **common)
    if request.idempotency_key is None:
        request = dataclasses.replace(request, idempotency_key=derived_key(request))
    return Row(line, request, kind, args)


def parse_batch(text: Iterable[str]) -> list[Row]:
    """The rows of a batch file (its lines, BOM removed), every one checked; BadBatch
    listing every bad row (and rows that clash) when any is."""
    records = _lines(text)
    first = next(records, None)
    if first is None:
        raise BadBatch("the file", [(0, "the file is empty: it needs a header line")])
    columns = _columns(first[1], first[0])
    rows: list[Row] = []
    problems: list[tuple[int, str]] = []
    for count, (line, cells) in enumerate(records, start=1):
        if count > MAX_BATCH_ROWS:
            problems = [(0, f"the file has more than {MAX_BATCH_ROWS:,} rows; split it")]
            break
        try:
            rows.append(read_row(line, columns, cells))
        except ValueError as e:
            problems.append((line, str(e)))
    else:
        problems += clashes(rows)
    if problems:
        raise BadBatch("the file", sorted(problems))
    return rows


def clashes(rows: Sequence[Row]) -> list[tuple[int, str]]:
    """Rows whose idempotency key or archive key an earlier row holds for another
    request: submitted, they would be refused (equal rows are one job)."""
    problems = []
    holders: dict[tuple[str, str], Row] = {}
    for row in rows:
        claims = {"idempotency_key": row.request.idempotency_key}
        claims["archive_key"] = row.request.archive_key
        for name, value in claims.items():
            first = row if value is None else holders.setdefault((name, value), row)
            if _identity(first.request) != _identity(row.request):
                why = (
                    f"{name} {str(value)[:80]!r} is also on line {first.line}, for another request"
                )
                problems.append((row.line, why))
    return problems


def _identity(request: Request) -> tuple[str | None, str]:
    return request.idempotency_key, request.digest


def read_batch(path: str) -> list[Row]:
    """The checked rows of the batch file at `path`; BadBatch naming the file otherwise."""
    try:
        with Path(path).open(encoding="utf-8-sig", newline="") as file:
            return parse_batch(file)
    except BadBatch as e:
        raise BadBatch(path, e.problems) from None
    except UnicodeDecodeError as e:
        raise BadBatch(path, [(0, f"the file is not UTF-8 text ({e.reason})")]) from None
    except OSError as e:
        raise BadBatch(path, [(0, f"cannot be read: {e.strerror or e}")]) from None


# --- submitting and waiting ----------------------------------------------------------------


def submit_row(row: Row) -> Outcome:
    """Submit one row unless its idempotency key names its job already; an IdempotencyConflict
    or ArchiveKeyTaken (another job, made before this run) is a refused row."""
    request = row.request
    key = request.idempotency_key
    assert key is not None  # every row has one (its own, or derived)
    try:
        existing: Job | None = find_job(key)
    except KeyError:
        existing = None
    if existing is not None and existing.request_digest == request.digest:
        return Outcome(row.line, existing.id, existing.status)
    try:
        job_id = submit_kind(
            row.kind,
            row.args,
            idempotency_key=key,
            metadata=request.metadata,
            archive_key=request.archive_key,
        )
    except ValueError as e:
        return Outcome(row.line, None, REFUSED, error=str(e))
    return Outcome(row.line, job_id, JobStatus.QUEUED, new=True)


def submit_rows(rows: Sequence[Row], *, err: TextIO) -> list[Outcome]:
    """Submit every row in turn, with a bar on `err` when it is a terminal."""
    outcomes = []
    step = max(1, len(rows) // BAR_STEPS)
    live = err.isatty()
    for done, row in enumerate(rows, start=1):
        outcomes.append(submit_row(row))
        if live and (done % step == 0 or done == len(rows)):
            _live(err, f"{bar(done, len(rows))}  {done}/{len(rows)} rows", final=done == len(rows))
    return outcomes


def tally(ended: dict[str, str | None], total: int) -> str:
    """`120/200 ended: 118 archived, 1 failed, 1 cancelled`."""
    counts = Counter(GONE if s is None else s for s in ended.values())
    parts = [f"{counts[s]} {s}" for s in (*FINAL_ORDER, GONE) if counts[s]]
    return f"{len(ended)}/{total} ended" + (": " + ", ".join(parts) if parts else "")


def wait_all(
    job_ids: Sequence[str],
    *,
    read: Callable[[Sequence[str]], list[str | None]],
    err: TextIO,
    timeout: float | None = None,
) -> dict[str, str | None]:
    """Follow the jobs until every one has ended or `timeout` s have passed, showing how
    many ended, archived, failed and were cancelled on `err` (a live bar on a terminal,
    else a line every LOG_INTERVAL_SECONDS and at the end). Each job's last status read
    (None: its record is gone)."""
    unique = list(dict.fromkeys(job_ids))
    deadline = None if timeout is None else time.monotonic() + timeout
    last: dict[str, str | None] = {}
    logged = time.monotonic()
    while True:
        running = [j for j in unique if j not in last or not _ended(last[j])]
        last.update(zip(running, read(running), strict=True))
        ended = {j: s for j, s in last.items() if _ended(s)}
        line = tally(ended, len(unique))
        over = len(ended) == len(unique) or (deadline is not None and time.monotonic() > deadline)
        if err.isatty():
            _live(err, f"{bar(len(ended), len(unique))}  {line}", final=over)
        elif over or time.monotonic() - logged >= LOG_INTERVAL_SECONDS:
            print(line, file=err, flush=True)
            logged = time.monotonic()
        if over:
            return last
        time.sleep(WAIT_INTERVAL_SECONDS)


def _ended(status: str | None) -> bool:
    return status is None or status in FINAL_STATUSES


def _live(stream: TextIO, line: str, *, final: bool) -> None:
    stream.write("\r\033[K" + line + ("\n" if final else ""))
    stream.flush()


def run_batch(
    path: str,
    *,
    wait: bool,
    timeout: float | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> bool:
    """`lipsync submit --batch`: check the file, submit its rows, say how many were new,
    and print `line,job_id,status` then one CSV line per row on `out`: the status when
    submitted or, with `wait`, once every job has ended (or the timeout passed). True when
    no row was refused and, with `wait`, every job was archived (cancelled is not)."""
    rows = read_batch(path)
    outcomes = submit_rows(rows, err=err)
    for o in outcomes:
        if o.error:
            print(f"lipsync: line {o.line}: {o.error}", file=err)
    new = sum(o.new for o in outcomes)
    refused = sum(o.status == REFUSED for o in outcomes)
    print(
        f"{new} new, {len(outcomes) - new - refused} already submitted"
        + (f", {refused} refused" if refused else ""),
        file=err,
        flush=True,
    )
    last: dict[str, str | None] = {}
    if wait:
        store = deps.job_store()
        ids = [o.job_id for o in outcomes if o.job_id]
        last = wait_all(ids, read=store.statuses, err=err, timeout=timeout)
        _report_unarchived(store, outcomes, last, err)
    _print_csv(outcomes, last if wait else None, out)
    archived = all(last.get(o.job_id) == JobStatus.ARCHIVED for o in outcomes if o.job_id)
    return not refused and (not wait or archived)


def _report_unarchived(
    store: JobStore, outcomes: Sequence[Outcome], last: dict[str, str | None], err: TextIO
) -> None:
    """A line on `err` for each job not archived: where it is, and why."""
    lines = {o.job_id: o.line for o in reversed(outcomes) if o.job_id}
    others = [j for j in lines if last.get(j) != JobStatus.ARCHIVED]
    for job_id, job in zip(others, store.read_many(others), strict=True):
        said = describe(job) if job else f"{job_id}: {GONE} (its record expired)"
        print(f"lipsync: line {lines[job_id]}: {said}", file=err)


def _print_csv(
    outcomes: Sequence[Outcome], last: dict[str, str | None] | None, out: TextIO
) -> None:
    """The header and one line per row; a job's status from `last` when given."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("line", "job_id", "status"))
    for o in outcomes:
        status = o.status
        if last is not None and o.job_id:
            status = last.get(o.job_id) or GONE
        writer.writerow((o.line, o.job_id or "", status))
    out.flush()
