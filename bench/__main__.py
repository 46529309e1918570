"""Run every benchmark and rewrite bench/RESULTS.md: `python -m bench` (or `make bench`).

    python -m bench                 # parts 1-7, about 10 minutes on 2 cores (8 if time allows)
    python -m bench --only 4,1      # some parts; the report goes to a temporary file then
    python -m bench --part 5        # one part, its rows and section merged into RESULTS.md
    python -m bench --part dashboard  # part 6: the jobs dashboard's pages with 10,000 jobs
    python -m bench --part adaptive   # part 7: the adaptive budget, Akool at 20/s (~2 min)
    python -m bench --part budget     # part 8: 10,000 jobs at AKOOL_MAX_RPS=5 (~75 min)

Parts run cheapest first: 4 (Akool calls per job, simulated clock), 5 (cost of one /metrics
scrape with 10,000 jobs), 6 (dashboard pages with 10,000 jobs), 7 (the adaptive request
budget against an Akool allowing 20 calls a second), 1 (archive throughput and
memory), 3 (engine overhead), 2 (poll capacity at 1,000 and 10,000 jobs), 8 (the worker
with 10,000 jobs in flight at Akool's request budget, AKOOL_MAX_RPS=5: tasks per Akool
call, CPU, the gaps between a job's polls; sizes from BENCH_BUDGET_JOBS, _RPS, _SECONDS,
see bench/budget.py). `--part N` (or `--part scrape` for 5, `--part dashboard` for 6,
`--part adaptive` for 7, `--part budget` for 8) runs part N alone and replaces only its
goal rows and its section in bench/RESULTS.md, keeping the rest. Everything runs against
private local processes on loopback and is stopped at the end. The whole run keeps to a
wall-clock budget (9 minutes by default): part 2 shortens its windows when time runs low,
and part 8 (about 75 minutes) runs only when what is left of the budget covers it (e.g.
`--budget 6000`); otherwise run it with `--part budget`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import (
    adaptive,
    backoff_calls,
    budget,
    dashboard,
    engine,
    polls,
    report,
    scrape,
    throughput,
)
from bench.common import ROOT, Deadline, Section, fmt, versions
from bench.procstat import machine

RESULTS = ROOT / "bench" / "RESULTS.md"
ALL_PARTS = ("1", "2", "3", "4", "5", "6", "7", "8")
# Cheapest first, so a short budget still gets most parts; 8 (about 75 minutes) last.
RUN_ORDER = ("4", "5", "6", "7", "1", "3", "2", "8")
# Names `--part` also takes.
PART_NAMES = {"scrape": "5", "dashboard": "6", "adaptive": "7", "budget": "8"}
BUDGET_SECONDS = 9 * 60
# Seconds part 2 needs besides its windows: stacks, seeding 10,000 jobs, warm-ups, stops.
POLL_OVERHEAD_SECONDS = 1.0 * 60 + 2 * 55


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", default=",".join(ALL_PARTS), help="comma-separated parts")
    parser.add_argument(
        "--part",
        default=None,
        help="run one part (a number or a name: scrape, dashboard, adaptive, budget) and merge "
        "it into the report",
    )
    parser.add_argument("--out", default=None, help="where to write the report")
    parser.add_argument("--budget", type=float, default=BUDGET_SECONDS, help="seconds")
    return parser.parse_args(argv)


def _poll_runs(deadline: Deadline) -> list[polls.Run]:
    """The part-2 runs, their windows shortened to fit what is left of the budget."""
    windows = {"1k": 40.0, "10k": 60.0, "10k-limit": 35.0}
    spare = deadline.left() - POLL_OVERHEAD_SECONDS - 15 - 20  # profile, margin
    scale = max(0.3, min(1.0, spare / sum(windows.values())))
    return [
        polls.Run("1k", 1_000, windows["1k"] * scale),
        polls.Run("10k", 10_000, windows["10k"] * scale, profile_seconds=15),
        # The limit binds at 10,000 jobs; the queue never drains, so a short warm-up.
        polls.Run("10k-limit", 10_000, windows["10k-limit"] * scale, "2500", warmup_max=10),
    ]


def _summary(parts: dict[str, Section]) -> list[list[str]]:
    rows: list[list[str]] = []
    if "1" in parts:
        raw = parts["1"].raw
        for size in throughput.SIZES:
            a = raw.get(f"{size}-archive")
            if not a:
                continue
            label = f"{size // 2**20} MiB"
            ceiling = raw[f"{size}-ceiling"]
            ratio = a["speed"] / ceiling
            rows.append(
                [
                    f"1. archive >= 0.9 x upload_file ({label}, fresh process each)",
                    f"{fmt(a['speed'])} MiB/s",
                    f"{fmt(ceiling)} MiB/s",
                    _verdict(ratio >= 0.9, f"{ratio:.2f} x"),
                ]
            )
            warm = raw.get(f"{size}-warm")
            if warm is not None:
                rows.append(
                    [
                        f"1. same, warm worker process ({label}; a and b in turns, one process)",
                        f"{warm:.2f} x",
                        "0.9 x",
                        _verdict(warm >= 0.9, ""),
                    ]
                )
            c = raw.get(f"{size}-rclone")
            if c:
                rows.append(
                    [
                        f"1. archive beats rclone copyurl ({label})",
                        f"{fmt(a['speed'])} MiB/s",
                        f"{fmt(c['speed'])} MiB/s",
                        _verdict(a["speed"] > c["speed"], f"{a['speed'] / c['speed']:.2f} x"),
                    ]
                )
            else:
                rows.append([f"1. archive beats rclone ({label})", "", "", "not run: no rclone"])
            above = a["peak"] - a["idle"]
            rows.append(
                [
                    f"1. archive peak RSS above idle < 64 MiB ({label})",
                    f"{fmt(above / 2**20)} MiB",
                    "64 MiB",
                    _verdict(above < 64 * 2**20, ""),
                ]
            )
    if "2" in parts:
        raw = parts["2"].raw
        for label, figures in raw.items():
            if label.endswith("limit"):
                continue
            jobs = "1,000" if label == "1k" else "10,000"
            rows.append(
                [
                    f"2. poll lag p99 <= 5 s ({jobs} jobs, steady state)",
                    f"{fmt(figures['lag_p99'], 2)} s (start-up p99 "
                    f"{fmt(figures['startup_p99'], 1)} s)",
                    "5 s",
                    _verdict(figures["lag_p99"] <= 5, ""),
                ]
            )
            rows.append(
                [
                    f"2. Redis memory per job < 4 KiB ({jobs} jobs)",
                    f"{fmt(figures['redis_per_job'], 0)} B",
                    "4,096 B",
                    _verdict(figures["redis_per_job"] < 4096, ""),
                ]
            )
        big = raw.get("10k")
        if big:
            per_job = (big["main_max"] - big["idle_main"]) / 10_000
            limited = raw.get("10k-limit", {})
            rows.append(
                [
                    "2. worker memory bounded (10,000 jobs)",
                    f"main process {fmt(big['idle_main'] / 2**20, 0)} -> "
                    f"{fmt(big['main_max'] / 2**20, 0)} MiB ({fmt(per_job / 1024, 1)} KiB per "
                    "waiting poll)",
                    "bounded, whatever the jobs in flight",
                    "missed: grows with the jobs in flight; worker_eta_task_limit bounds it "
                    f"but starves the worker ({fmt(limited.get('poll_rate', float('nan')))} of "
                    f"{fmt(limited.get('expected_rate', float('nan')))} polls/s, polls "
                    f"{fmt(limited.get('overdue_oldest', float('nan')), 0)} s overdue), part 2",
                ]
            )
    if "3" in parts:
        rows += engine.summary_rows(parts["3"].raw)
    if "5" in parts:
        rows += scrape.summary_rows(parts["5"].raw)
    if "6" in parts:
        rows += dashboard.summary_rows(parts["6"].raw)
    if "7" in parts:
        rows += adaptive.summary_rows(parts["7"].raw)
    if "8" in parts:
        rows += budget.summary_rows(parts["8"].raw)
    if "4" in parts:
        raw = parts["4"].raw
        for duration in (300.0, 1800.0):
            figures = raw[duration]
            ratio = figures["calls"] / figures["fixed"]
            rows.append(
                [
                    f"4. Akool calls <= 1/5 of fixed 5 s ({duration / 60:g} min job)",
                    f"{fmt(figures['calls'], 1)} calls",
                    f"{figures['fixed']} calls",
                    _verdict(ratio <= 0.2, f"{ratio:.3f}"),
                ]
            )
        worst = max(f["max_delay"] for f in raw.values())
        rows.append(
            [
                "4. completion noticed within POLL_MAX_SECONDS",
                f"worst {fmt(worst, 1)} s",
                "60 s",
                _verdict(worst <= 60, ""),
            ]
        )
    return rows


def _verdict(ok: bool, detail: str) -> str:
    word = "met" if ok else "missed"
    return f"{word} ({detail})" if detail else word


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.part is not None:
        return _one_part(PART_NAMES.get(args.part, args.part), args)
    only = {p.strip() for p in args.only.split(",") if p.strip()}
    deadline = Deadline(args.budget)
    started_at = dt.datetime.now(dt.UTC)
    started = time.monotonic()
    os.environ.pop("AWS_PROFILE", None)
    for name, value in (
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
    ):
        os.environ[name] = value
    machine_info = machine()
    work = Path(tempfile.mkdtemp(prefix="lipsync-bench-"))
    parts: dict[str, Section] = {}
    skipped: list[str] = []
    try:
        for part in RUN_ORDER:
            if part not in only:
                skipped.append(f"part {part} (not asked for)")
                continue
            if part == "8" and deadline.left() < budget.Config.from_env().expected_seconds():
                skipped.append("part 8 (longer than the budget left: run `--part budget`)")
                continue
            print(f"bench: part {part} ({fmt(deadline.left(), 0)} s of budget left)", flush=True)
            parts[part] = _run_part(part, work, deadline)
            print(f"bench: part {part} took {fmt(parts[part].seconds, 0)} s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - started
    everything = only == set(ALL_PARTS)
    text = report.render(
        [parts[p] for p in ALL_PARTS if p in parts],
        started=started_at,
        seconds=seconds,
        machine=machine_info,
        versions=versions(),
        summary=_summary(parts),
        command="python -m bench" + ("" if everything else f" --only {args.only}"),
        skipped=skipped,
    )
    out = Path(args.out) if args.out else None
    if out is None:
        if everything:
            out = RESULTS
        else:
            with tempfile.NamedTemporaryFile("w", suffix=".md", delete=False) as handle:
                out = Path(handle.name)
    out.write_text(text)
    print(f"bench: wrote {out} ({fmt(seconds / 60, 1)} min)", flush=True)
    return 0


def _one_part(part: str, args: argparse.Namespace) -> int:
    """Run one part and merge its goal rows and section into the report (--part)."""
    if part not in ALL_PARTS:
        names = ", ".join([*ALL_PARTS, *PART_NAMES])
        print(f"bench: no part {part!r} (parts: {names})", file=sys.stderr)
        return 2
    started_at = dt.datetime.now(dt.UTC)
    out = Path(args.out) if args.out else RESULTS
    work = Path(tempfile.mkdtemp(prefix="lipsync-bench-"))
    try:
        section = _run_part(part, work, Deadline(args.budget))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = report.merge(
        out.read_text(),
        section,
        _summary({part: section}),
        command=f"python -m bench --part {args.part}",
        started=started_at,
    )
    out.write_text(text)
    print(f"bench: merged part {part} into {out} ({fmt(section.seconds, 0)} s)", flush=True)
    return 0


def _run_part(part: str, work: Path, deadline: Deadline) -> Section:
    directory = work / f"part{part}"
    directory.mkdir()
    if part == "4":
        return backoff_calls.run()
    if part == "5":
        return scrape.run(directory)
    if part == "6":
        return dashboard.run(directory)
    if part == "7":
        return adaptive.run()
    if part == "8":
        return budget.run(directory)
    if part == "1":
        return throughput.run(directory)
    if part == "3":
        return engine.run(directory)
    runs = _poll_runs(deadline)
    return polls.run(directory, runs)


if __name__ == "__main__":
    sys.exit(main())
