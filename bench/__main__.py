"""Run the benchmarks and rewrite bench/RESULTS.md: `python -m bench` (or `make bench`).

    python -m bench                      # every part within --budget (about 10 minutes)
    python -m bench --only scrape,polls  # some parts; the report goes to a temporary file
    python -m bench --part scrape        # one part, merged into bench/RESULTS.md
    python -m bench --part budget        # 10,000 jobs at AKOOL_MAX_RPS=5 (about 75 minutes)
    python -m bench --smoke              # every part at a tiny size (under a minute)

Parts are named by their module (bench/<part>.py) and run, and are listed in RESULTS.md, in
the order of PARTS: cheapest first, so a short budget still gets most of them. The numbers
they went by before are accepted as aliases (`--part 8` is `--part budget`). What each part
measures and how, and what its figures mean, is in bench/NOTES.md.

`--part NAME` replaces only that part's goal rows and section in the report (bench/RESULTS.md
unless `--out`), keeping the rest. `--only A,B` writes a whole report of those parts to a
temporary file unless `--out`; a full run writes bench/RESULTS.md. Everything runs against
private local processes on loopback and is stopped at the end. The whole run keeps to a
wall-clock budget (`--budget`, seconds, 9 minutes by default): polls shortens its windows
when time runs low, and a part that says it takes longer than what is left (budget, about 75
minutes: its sizes come from BENCH_BUDGET_JOBS, _RPS, _SECONDS, _IDLE_SECONDS) is skipped,
to be run with `--part`.

`--smoke` runs the parts asked for (all by default) at their smoke sizes, a few side by side,
writes the report to a temporary file (or `--out`, never bench/RESULTS.md) with every
verdict marked "smoke", and exits 1 if a part raised.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

from bench import (
    adaptive,
    backoff_calls,
    budget,
    dashboard,
    engine,
    polls,
    report,
    scrape,
    submit,
    throughput,
)
from bench.common import ROOT, Deadline, Section, fmt, versions
from bench.procstat import machine

RESULTS = ROOT / "bench" / "RESULTS.md"
# Every part, in the order they run and are listed: cheapest first, budget (~75 min) last.
PARTS: tuple[ModuleType, ...] = (
    backoff_calls,
    submit,
    scrape,
    dashboard,
    adaptive,
    throughput,
    engine,
    polls,
    budget,
)
# The numbers the parts went by before they were named by module.
ALIASES = {
    "1": "throughput",
    "2": "polls",
    "3": "engine",
    "4": "backoff_calls",
    "5": "scrape",
    "6": "dashboard",
    "7": "adaptive",
    "8": "budget",
}
BUDGET_SECONDS = 9 * 60
# Parts run side by side at smoke size (most of their time is processes starting).
SMOKE_LANES = 4


def name(part: ModuleType) -> str:
    return part.__name__.rpartition(".")[2]


NAMES = tuple(name(part) for part in PARTS)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--only", default=None, help="comma-separated parts (names or numbers)")
    parser.add_argument("--part", default=None, help="one part, merged into the report")
    parser.add_argument("--out", default=None, help="where to write the report")
    parser.add_argument("--budget", type=float, default=BUDGET_SECONDS, help="seconds")
    parser.add_argument("--smoke", action="store_true", help="every part at a tiny size")
    return parser.parse_args(argv)


def _chosen(words: str) -> list[ModuleType]:
    """The parts `words` names (comma-separated names or old numbers), in PARTS order."""
    wanted = {ALIASES.get(w.strip(), w.strip()) for w in words.split(",") if w.strip()}
    unknown = wanted - set(NAMES)
    if unknown:
        print(
            f"bench: no part {', '.join(sorted(unknown))} (parts: {', '.join(NAMES)}; "
            f"or their old numbers {', '.join(ALIASES)})",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return [part for part in PARTS if name(part) in wanted]


def _run(part: ModuleType, work: Path, deadline: Deadline, smoke: bool) -> Section:
    """One part's `run()`, in a directory of its own; its section, named and timed."""
    directory = work / name(part)
    directory.mkdir()
    print(f"bench: {name(part)} ({fmt(deadline.left(), 0)} s of budget left)", flush=True)
    started = time.monotonic()
    section: Section = part.run(smoke=smoke, work=directory, deadline=deadline)
    section.part, section.seconds = name(part), time.monotonic() - started
    print(f"bench: {name(part)} took {fmt(section.seconds, 0)} s", flush=True)
    return section


def _too_long(part: ModuleType, deadline: Deadline, *, smoke: bool) -> bool:
    """Whether the part says it takes longer than what is left of the budget."""
    expected = getattr(part, "expected_seconds", None)
    return expected is not None and expected(smoke) > deadline.left()


def _fake_aws() -> None:
    """Local fake AWS credentials for the parts that talk to moto in this process."""
    os.environ.pop("AWS_PROFILE", None)
    for key, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ[key] = value


def _smoke(
    parts: list[ModuleType], work: Path, deadline: Deadline
) -> tuple[dict[str, Section], list[str]]:
    """Run `parts` at smoke size, SMOKE_LANES at a time; their sections, and the parts that
    raised (their tracebacks printed)."""
    with ThreadPoolExecutor(SMOKE_LANES) as pool:
        futures = {name(p): pool.submit(_run, p, work, deadline, True) for p in parts}
    sections: dict[str, Section] = {}
    failed: list[str] = []
    for part_name, future in futures.items():
        error = future.exception()
        if error is None:
            sections[part_name] = future.result()
            continue
        failed.append(part_name)
        lines = traceback.format_exception(error)
        print(f"bench: {part_name} raised:\n{''.join(lines)}", file=sys.stderr, flush=True)
    return sections, failed


def _in_turn(
    parts: list[ModuleType], work: Path, deadline: Deadline
) -> tuple[dict[str, Section], list[str]]:
    """Run `parts` one after the other at full size; their sections, and the parts skipped as
    longer than what was left of the budget."""
    sections: dict[str, Section] = {}
    skipped: list[str] = []
    for part in parts:
        if _too_long(part, deadline, smoke=False):
            skipped.append(name(part))
            continue
        sections[name(part)] = _run(part, work, deadline, smoke=False)
    return sections, skipped


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.part is not None:
        if args.smoke or args.only:
            raise SystemExit("bench: --part runs one part alone, without --smoke or --only")
        return _one_part(_chosen(args.part), args)
    parts = _chosen(args.only) if args.only else list(PARTS)
    everything = len(parts) == len(PARTS)
    if args.out:
        out = Path(args.out)
    elif everything and not args.smoke:
        out = RESULTS
    else:
        with tempfile.NamedTemporaryFile("w", suffix=".md", delete=False) as handle:
            out = Path(handle.name)
    if args.smoke and out.resolve() == RESULTS.resolve():
        raise SystemExit("bench: a smoke run never writes bench/RESULTS.md")
    deadline = Deadline(args.budget)
    started_at, started = dt.datetime.now(dt.UTC), time.monotonic()
    _fake_aws()
    machine_info = machine()
    work = Path(tempfile.mkdtemp(prefix="lipsync-bench-"))
    try:
        run_all = _smoke if args.smoke else _in_turn
        sections, left = run_all(parts, work, deadline)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    why = "raised: see the run's output" if args.smoke else "longer than the budget left: --part"
    skipped = [f"{n} (not asked for)" for n in NAMES if n not in {name(p) for p in parts}]
    skipped += [f"{n} ({why})" for n in left]
    seconds = time.monotonic() - started
    command = "python -m bench" + (" --smoke" if args.smoke else "")
    command += "" if everything else f" --only {args.only}"
    text = report.render(
        [sections[n] for n in NAMES if n in sections],
        started=started_at,
        seconds=seconds,
        machine=machine_info,
        versions=versions(),
        command=command,
        skipped=skipped,
        smoke=args.smoke,
    )
    out.write_text(text)
    print(f"bench: wrote {out} ({fmt(seconds / 60, 1)} min)", flush=True)
    return 1 if args.smoke and left else 0


def _one_part(chosen: list[ModuleType], args: argparse.Namespace) -> int:
    """Run one part and merge its goal rows and section into the report (--part)."""
    if len(chosen) != 1:
        raise SystemExit("bench: --part takes one part")
    part = chosen[0]
    started_at = dt.datetime.now(dt.UTC)
    out = Path(args.out) if args.out else RESULTS
    _fake_aws()
    work = Path(tempfile.mkdtemp(prefix="lipsync-bench-"))
    try:
        section = _run(part, work, Deadline(args.budget), smoke=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    command = f"python -m bench --part {args.part}"
    text = report.merge(out.read_text(), section, NAMES, command=command, started=started_at)
    out.write_text(text)
    print(f"bench: merged {name(part)} into {out} ({fmt(section.seconds, 0)} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
