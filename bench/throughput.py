"""Archive throughput and memory.

Videos of 30 MiB and 300 MiB served by bench.fileserver are copied into moto's S3 server by
(a) the worker's archive step (`worker.archive.Archiver.archive`), (b) boto3 `upload_file`
from local disk (the ceiling), (c) `rclone copyurl`, (d) `requests.get(url).content` +
`put_object`. Each transfer runs in a fresh process; its idle RSS (everything imported and
connected) and its peak RSS during the transfer are measured, and the median of the
repeats is reported. One extra archive run is profiled with py-spy, together with moto.
"""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import fileserver, profiling
from bench.common import Deadline, MiB, Section, child_env, fmt, median, mib
from bench.stack import PORTS
from bench.transfers import BUCKET, CHILD_TIMEOUT, Transfers

MODES = ("archive", "upload_file", "rclone", "naive")
LABELS = {
    "archive": "(a) worker archive step (Archiver.archive)",
    "upload_file": "(b) boto3 upload_file from disk (ceiling)",
    "rclone": "(c) rclone copyurl",
    "naive": "(d) requests .content + put_object",
}
MEMORY_GOAL = 64 * MiB
THROUGHPUT_GOAL = 0.9


@dataclass(frozen=True)
class Size:
    """The video sizes, and per size the fresh-process repeats and the warm rounds."""

    sizes: tuple[int, ...]
    repeats: dict[int, int]
    warm_pairs: dict[int, int]


# Medians of this many runs per size: the 300 MiB figures vary by +-20 % from run to run
# (moto is the bottleneck and it is noisy), so it gets more.
FULL = Size(
    sizes=(30 * MiB, 300 * MiB),
    repeats={30 * MiB: 5, 300 * MiB: 7},
    warm_pairs={30 * MiB: 5, 300 * MiB: 3},
)
SMOKE = Size(sizes=(9 * MiB,), repeats={}, warm_pairs={})
SMOKE_REPEATS = 1


def run(*, smoke: bool, work: Path, deadline: Deadline) -> Section:
    """Every method at every size, the warm rounds, and a profile of the largest archive."""
    size = SMOKE if smoke else FULL
    section = Section("archive throughput and memory", smoke=smoke)
    with PORTS:
        transfers = Transfers(work)
        transfers.start()
    results: dict[int, dict[str, list[dict[str, Any]]]] = {}
    warm: dict[int, dict[str, list[float]]] = {}
    try:
        rclone_idle = transfers.rclone_idle() if transfers.rclone else 0
        for each in size.sizes:
            path = work / f"video-{each}"
            with path.open("wb") as out:
                for block in fileserver.content(each):
                    out.write(block)
            count = size.repeats.get(each, SMOKE_REPEATS if smoke else 3)
            results[each] = _rounds(transfers, each, path, count, rclone_idle)
            warm[each] = transfers.warm_pairs(each, path, size.warm_pairs.get(each, 1))
            if each == max(size.sizes):
                section.profiles = _profile_archive(transfers, each, path, work)
            path.unlink()
    finally:
        transfers.stop()
    _report(section, results)
    _warm_report(section, warm)
    _goals(section, sorted(results), bool(transfers.rclone))
    return section


def _rounds(
    transfers: Transfers, size: int, path: Path, count: int, rclone_idle: int
) -> dict[str, list[dict[str, Any]]]:
    """`count` rounds of every method at `size`; the figures of each run, by method."""
    expected = fileserver.content_sha256(size)
    per_mode: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    # A fresh moto is slow on its first large upload; that run is not counted.
    transfers.python_child("upload_file", size, path)
    # (a), (b) and (c) take turns going first; (d) runs last: after it moto has just held
    # and freed one whole object, and the transfer that follows pays for that (measured: it
    # biased whichever method came next by up to 30 %).
    rotating = MODES[:3]
    rounds = [rotating[r % 3 :] + rotating[: r % 3] for r in range(count)]
    rounds += [("naive",)] * count
    for order in rounds:
        for mode in order:
            if mode == "rclone":
                if transfers.rclone:
                    figures = transfers.rclone_child(size)
                    figures["idle_rss"] = rclone_idle
                    per_mode[mode].append(figures)
                continue
            figures = transfers.python_child(mode, size, path)
            if figures["stored_bytes"] != size:
                raise RuntimeError(f"{mode} stored {figures['stored_bytes']} of {size}")
            if mode == "archive" and figures["sha256"] != expected:
                raise RuntimeError("the archive step streamed bytes with a wrong sha256")
            per_mode[mode].append(figures)
    return per_mode


def _profile_archive(
    transfers: Transfers, size: int, path: Path, directory: Path
) -> list[tuple[str, str]]:
    """One more archive run with py-spy on the worker-side process and on moto."""
    exe = profiling.py_spy()
    if exe is None:
        return [("profile", "py-spy is not installed: pip install py-spy")]
    moto_raw, child_raw = directory / "moto.raw", directory / "archive.raw"
    assert transfers.s3.process is not None and transfers.s3.process.proc is not None
    moto = profiling.record(transfers.s3.process.proc.pid, 8, moto_raw)
    url = f"{transfers.files_url}/bytes/{size}"
    argv = [exe, "record", "-r", "100", "-f", "raw", "-o", str(child_raw), "--"]
    argv += [sys.executable, "-m", "bench.archive_child", "archive", url, transfers.s3.url, BUCKET]
    argv += [f"bench/profile-{size}", "--file", str(path)]
    subprocess.run(argv, env=child_env(), capture_output=True, timeout=CHILD_TIMEOUT, check=False)
    if moto is not None:
        profiling.stop(moto)
    return [
        (
            f"py-spy: archive step process, {size // MiB} MiB (all threads, on-CPU samples)",
            profiling.summarise(child_raw, title="archive child"),
        ),
        (
            "py-spy: moto S3 server during the same transfer",
            profiling.summarise(moto_raw, title="moto server"),
        ),
    ]


def _report(section: Section, results: dict[int, dict[str, list[dict[str, Any]]]]) -> None:
    """The table of every method at every size; medians, and ratios to (b), in `raw`."""
    rows: list[list[str]] = []
    raw: dict[str, Any] = {}
    for size, per_mode in results.items():
        speed = {
            m: median([f["bytes"] / f["seconds"] for f in runs]) / MiB
            for m, runs in per_mode.items()
            if runs
        }
        ceiling = speed.get("upload_file", float("nan"))
        for mode in MODES:
            runs = per_mode.get(mode, [])
            label = LABELS[mode]
            if not runs:
                rows.append([f"{size // MiB} MiB", label, "not run (rclone missing)"] + [""] * 7)
                continue
            peak = median([float(r["peak_rss"]) for r in runs])
            idle = median([float(r["idle_rss"]) for r in runs])
            rows.append(
                [
                    f"{size // MiB} MiB",
                    label,
                    fmt(speed[mode]),
                    fmt(speed[mode] / ceiling, 2),
                    mib(peak),
                    mib(idle),
                    mib(peak - idle),
                    fmt(median([r["cpu"] for r in runs]), 2),
                    fmt(median([r["moto_cpu"] for r in runs]), 2),
                    ", ".join(fmt(r["seconds"], 2) for r in runs),
                ]
            )
            raw[f"{size}-{mode}"] = {"speed": speed[mode], "peak": peak, "idle": idle}
        a_runs, b_runs = per_mode.get("archive", []), per_mode.get("upload_file", [])
        if a_runs and b_runs:
            paired = [b["seconds"] / a["seconds"] for a, b in zip(a_runs, b_runs, strict=False)]
            raw[f"{size}-paired"] = median(paired)
            raw[f"{size}-paired-range"] = (min(paired), max(paired))
        raw[f"{size}-ceiling"] = ceiling
    section.table(
        [
            "size",
            "method",
            "MiB/s",
            "ratio to (b)",
            "peak RSS MiB",
            "idle MiB",
            "above idle MiB",
            "client CPU s",
            "moto CPU s",
            "runs (s)",
        ],
        rows,
    )
    section.raw = raw


def _warm_report(section: Section, warm: dict[int, dict[str, list[float]]]) -> None:
    """The warm rounds ((a) and (b) in turns in one process): a table, the ratios in `raw`."""
    rows = []
    for size, times in warm.items():
        a, b = median(times["archive"]), median(times["upload_file"])
        section.raw[f"{size}-warm"] = b / a
        rows.append(
            [
                f"{size // MiB} MiB",
                str(len(times["archive"])),
                fmt(size / a / MiB),
                fmt(size / b / MiB),
                f"{b / a:.2f}",
                ", ".join(fmt(t, 2) for t in times["archive"]),
                ", ".join(fmt(t, 2) for t in times["upload_file"]),
            ]
        )
    section.table(
        [
            "warm, one process",
            "rounds (after one not counted)",
            "(a) MiB/s",
            "(b) MiB/s",
            "ratio (a) / (b)",
            "runs (a) s",
            "runs (b) s",
        ],
        rows,
    )


def _goals(section: Section, sizes: list[int], have_rclone: bool) -> None:
    raw = section.raw
    paired = []
    for size in sizes:
        label = f"{size // MiB} MiB"
        a, ceiling = raw[f"{size}-archive"], raw[f"{size}-ceiling"]
        ratio = a["speed"] / ceiling
        section.goal(
            f"archive >= 0.9 x upload_file ({label}, fresh process each)",
            f"{fmt(a['speed'])} MiB/s",
            f"{fmt(ceiling)} MiB/s",
            ratio >= THROUGHPUT_GOAL,
            f"{ratio:.2f} x",
        )
        warm = raw[f"{size}-warm"]
        section.goal(
            f"same, warm worker process ({label}; a and b in turns, one process)",
            f"{warm:.2f} x",
            f"{THROUGHPUT_GOAL} x",
            warm >= THROUGHPUT_GOAL,
        )
        rclone = raw.get(f"{size}-rclone")
        if have_rclone and rclone:
            section.goal(
                f"archive beats rclone copyurl ({label})",
                f"{fmt(a['speed'])} MiB/s",
                f"{fmt(rclone['speed'])} MiB/s",
                a["speed"] > rclone["speed"],
                f"{a['speed'] / rclone['speed']:.2f} x",
            )
        else:
            section.not_judged(f"archive beats rclone ({label})", "not run: no rclone")
        above = a["peak"] - a["idle"]
        section.goal(
            f"archive peak RSS above idle < 64 MiB ({label})",
            f"{mib(above)} MiB",
            f"{MEMORY_GOAL // MiB} MiB",
            above < MEMORY_GOAL,
        )
        low, high = raw.get(f"{size}-paired-range", (math.nan, math.nan))
        middle = raw.get(f"{size}-paired", math.nan)
        paired.append([label, f"{middle:.2f}", f"{low:.2f}", f"{high:.2f}"])
    section.table(["(a) / (b) run by run, same round", "median", "lowest", "highest"], paired)
