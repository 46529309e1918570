"""Part 1: archive throughput and memory.

Videos of 30 MiB and 300 MiB served by bench.fileserver are copied into moto's S3 server by
(a) the worker's archive step (`worker.archive.Archiver.archive`), (b) boto3 `upload_file`
from local disk (the ceiling), (c) `rclone copyurl`, (d) `requests.get(url).content` +
`put_object`. Each transfer runs in a fresh process; its idle RSS (everything imported and
connected) and its peak RSS during the transfer are measured, and the median of the
repeats is reported. One extra archive run is profiled with py-spy, together with moto.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3

from bench import fileserver, profiling
from bench.common import MiB, Section, child_env, fmt, median, mib
from bench.procstat import cpu_seconds
from bench.stack import NoDelayS3
from worker.dev.stack import Process, free_port, port_open, wait_until

SIZES = (30 * MiB, 300 * MiB)
MODES = ("archive", "upload_file", "rclone", "naive")
LABELS = {
    "archive": "(a) worker archive step (Archiver.archive)",
    "upload_file": "(b) boto3 upload_file from disk (ceiling)",
    "rclone": "(c) rclone copyurl",
    "naive": "(d) requests .content + put_object",
}
BUCKET = "bench"
RCLONE_REMOTE = "benchs3"
MEMORY_GOAL = 64 * MiB
THROUGHPUT_GOAL = 0.9
CHILD_TIMEOUT = 180


def _rclone_env(s3_url: str, directory: Path) -> dict[str, str]:
    env = child_env()
    env.pop("AWS_CA_BUNDLE", None)  # rclone 1.60 fails with LoadCustomCABundleError otherwise
    conf = directory / "rclone.conf"
    conf.touch()
    prefix = f"RCLONE_CONFIG_{RCLONE_REMOTE.upper()}_"
    env.update(
        {
            "RCLONE_CONFIG": str(conf),
            prefix + "TYPE": "s3",
            prefix + "PROVIDER": "Other",
            prefix + "ENDPOINT": s3_url,
            prefix + "ACCESS_KEY_ID": "testing",
            prefix + "SECRET_ACCESS_KEY": "testing",
            prefix + "REGION": "us-east-1",
        }
    )
    return env


def _wait4(argv: list[str], env: dict[str, str]) -> tuple[float, int, int, str, float]:
    """Run argv; return (wall seconds, exit status, peak RSS bytes of the child, its output,
    its CPU seconds)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + CHILD_TIMEOUT
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0)
        text = out.read().decode(errors="replace")
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, proc.returncode, usage.ru_maxrss * 1024, text, cpu


class Bench:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.s3 = NoDelayS3(directory)
        port = free_port()
        self.files = Process(
            "fileserver",
            [sys.executable, "-m", "bench.fileserver", "--port", str(port)],
            directory / "fileserver.log",
            env=child_env(),
        )
        self.files_url = f"http://127.0.0.1:{port}"
        self.rclone = shutil.which("rclone")
        self.client: Any = None

    def start(self) -> None:
        self.s3.start()
        self.files.start()
        port = int(self.files_url.rsplit(":", 1)[1])
        wait_until(lambda: port_open(port), 30, "bench file server")
        self.client = boto3.client(
            "s3",
            endpoint_url=self.s3.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's fake credential
            region_name="us-east-1",
        )
        self.client.create_bucket(Bucket=BUCKET)

    def stop(self) -> None:
        self.files.stop()
        self.s3.stop()

    def python_child(self, mode: str, size: int, path: Path, *extra: str) -> dict[str, Any]:
        url = f"{self.files_url}/bytes/{size}"
        argv = [sys.executable, "-m", "bench.archive_child", mode, url, self.s3.url, BUCKET]
        argv += [f"bench/{mode}-{size}", "--file", str(path), *extra]
        moto_cpu = self.moto_cpu()
        seconds, code, maxrss, text, cpu = _wait4(argv, child_env())
        if code != 0:
            raise RuntimeError(f"{mode} child failed ({code}):\n{text[-2000:]}")
        figures: dict[str, Any] = json.loads(text.strip().splitlines()[-1])
        figures["wall"] = seconds
        figures["maxrss"] = maxrss
        figures["cpu"] = cpu
        figures["moto_cpu"] = self.moto_cpu() - moto_cpu
        self.client.delete_object(Bucket=BUCKET, Key=figures["key"])
        return figures

    def rclone_child(self, size: int) -> dict[str, Any]:
        assert self.rclone is not None
        env = _rclone_env(self.s3.url, self.directory)
        key = f"bench/rclone-{size}"
        # --s3-no-head: rclone 1.60 checks a multipart upload with HEAD ?versionId=null, which
        # moto answers 400, and would then copy everything again.
        argv = [self.rclone, "copyurl", "--retries", "1", "--s3-no-head", "--s3-no-check-bucket"]
        argv += [f"{self.files_url}/bytes/{size}", f"{RCLONE_REMOTE}:{BUCKET}/{key}"]
        moto_cpu = self.moto_cpu()
        seconds, code, maxrss, text, cpu = _wait4(argv, env)
        if code != 0:
            raise RuntimeError(f"rclone failed ({code}):\n{text[-2000:]}")
        moto_cpu = self.moto_cpu() - moto_cpu
        stored = self.client.head_object(Bucket=BUCKET, Key=key)["ContentLength"]
        self.client.delete_object(Bucket=BUCKET, Key=key)
        return {
            "mode": "rclone",
            "seconds": seconds,
            "bytes": size,
            "stored_bytes": stored,
            "peak_rss": maxrss,
            "cpu": cpu,
            "moto_cpu": moto_cpu,
        }

    def warm_pairs(self, size: int, path: Path, pairs: int) -> dict[str, list[float]]:
        url = f"{self.files_url}/bytes/{size}"
        argv = [sys.executable, "-m", "bench.archive_child", "warm", url, self.s3.url, BUCKET]
        argv += [f"bench/warm-{size}", "--file", str(path), "--pairs", str(pairs)]
        _, code, _, text, _ = _wait4(argv, child_env())
        if code != 0:
            raise RuntimeError(f"warm child failed ({code}):\n{text[-2000:]}")
        times: dict[str, list[float]] = json.loads(text.strip().splitlines()[-1])["times"]
        return times

    def rclone_idle(self) -> int:
        """Peak RSS of rclone set up and talking to S3 without transferring: its baseline."""
        assert self.rclone is not None
        env = _rclone_env(self.s3.url, self.directory)
        _, _, maxrss, _, _ = _wait4([self.rclone, "lsd", f"{RCLONE_REMOTE}:"], env)
        return maxrss

    def moto_cpu(self) -> float:
        assert self.s3.process is not None and self.s3.process.proc is not None
        return cpu_seconds(self.s3.process.proc.pid)


# Medians of this many runs per size: the 300 MiB figures vary by +-20 % from run to run
# (moto is the bottleneck and it is noisy), so it gets more.
REPEATS = {30 * MiB: 5, 300 * MiB: 7}
WARM_PAIRS = {30 * MiB: 5, 300 * MiB: 3}


def run(directory: Path, *, repeats: dict[int, int] | None = None, profile: bool = True) -> Section:
    started = time.monotonic()
    section = Section("1. Archive throughput and memory")
    bench = Bench(directory)
    bench.start()
    results: dict[int, dict[str, list[dict[str, Any]]]] = {}
    warm: dict[int, dict[str, list[float]]] = {}
    profiles: list[tuple[str, str]] = []
    try:
        rclone_idle = bench.rclone_idle() if bench.rclone else 0
        for size in SIZES:
            path = directory / f"video-{size}"
            with path.open("wb") as out:
                for block in fileserver.content(size):
                    out.write(block)
            expected = fileserver.content_sha256(size)
            per_mode: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
            # A fresh moto is slow on its first large upload; that run is not counted.
            bench.python_child("upload_file", size, path)
            count = (repeats or REPEATS).get(size, 3)
            # (a), (b) and (c) take turns going first; (d) runs last: after it moto has just
            # held and freed one whole object, and the transfer that follows pays for that
            # (measured: it biased whichever method came next by up to 30 %).
            rotating = MODES[:3]
            rounds = [rotating[r % 3 :] + rotating[: r % 3] for r in range(count)]
            rounds += [("naive",)] * count
            for order in rounds:
                for mode in order:
                    if mode == "rclone":
                        if bench.rclone:
                            figures = bench.rclone_child(size)
                            figures["idle_rss"] = rclone_idle
                            per_mode[mode].append(figures)
                        continue
                    figures = bench.python_child(mode, size, path)
                    if figures["stored_bytes"] != size:
                        raise RuntimeError(f"{mode} stored {figures['stored_bytes']} of {size}")
                    if mode == "archive" and figures["sha256"] != expected:
                        raise RuntimeError("the archive step streamed bytes with a wrong sha256")
                    per_mode[mode].append(figures)
            results[size] = per_mode
            warm[size] = bench.warm_pairs(size, path, WARM_PAIRS.get(size, 3))
            if profile and size == max(SIZES):
                profiles = _profile_archive(bench, size, path, directory)
            path.unlink()
    finally:
        bench.stop()
    _report(section, results, rclone_idle, bool(bench.rclone))
    for size, times in warm.items():
        a, b = median(times["archive"]), median(times["upload_file"])
        section.raw[f"{size}-warm"] = b / a
        section.notes.append(
            f"Warm, as a worker runs it ({size // MiB} MiB): (a) and (b) taking turns in one "
            f"long-lived process, {len(times['archive'])} rounds after one not counted: "
            f"(a) {fmt(size / a / MiB)} MiB/s, (b) {fmt(size / b / MiB)} MiB/s, ratio "
            f"{b / a:.2f} (runs (a) {', '.join(fmt(t, 2) for t in times['archive'])}; (b) "
            f"{', '.join(fmt(t, 2) for t in times['upload_file'])})."
        )
    section.profiles = profiles
    section.seconds = time.monotonic() - started
    return section


def _profile_archive(bench: Bench, size: int, path: Path, directory: Path) -> list[tuple[str, str]]:
    """One more archive run with py-spy on the worker-side process and on moto."""
    exe = profiling.py_spy()
    if exe is None:
        return [("profile", "py-spy is not installed: pip install py-spy")]
    moto_raw, child_raw = directory / "moto.raw", directory / "archive.raw"
    assert bench.s3.process is not None and bench.s3.process.proc is not None
    moto = profiling.record(bench.s3.process.proc.pid, 8, moto_raw)
    url = f"{bench.files_url}/bytes/{size}"
    argv = [exe, "record", "-r", "100", "-f", "raw", "-o", str(child_raw), "--"]
    argv += [sys.executable, "-m", "bench.archive_child", "archive", url, bench.s3.url, BUCKET]
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


def _report(
    section: Section,
    results: dict[int, dict[str, list[dict[str, Any]]]],
    rclone_idle: int,
    have_rclone: bool,
) -> None:
    section.intro = (
        "Medians of the repeats; each transfer in a fresh process. MiB/s counts the transfer "
        "alone (Python: from the first request to the end of the upload; rclone: its whole "
        "process, start-up included). Peak RSS is the process's VmHWM during the transfer "
        "(reset after start-up via /proc/self/clear_refs); idle is its RSS with everything "
        "imported and one S3 request made. rclone's idle is the peak of `rclone lsd` on the "
        "same remote. moto's own memory is not counted."
    )
    section.headers = [
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
    ]
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
                why = "rclone not installed (apt-get install rclone): skipped"
                section.rows.append([f"{size // MiB} MiB", label, why] + [""] * 7)
                continue
            peak = median([float(r["peak_rss"]) for r in runs])
            idle = median([float(r["idle_rss"]) for r in runs])
            section.rows.append(
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
    section.raw = raw
    _goals(section, results, have_rclone)


def _goals(
    section: Section, results: dict[int, dict[str, list[dict[str, Any]]]], have_rclone: bool
) -> None:
    raw = section.raw
    for size in results:
        a = raw[f"{size}-archive"]
        ratio = a["speed"] / raw[f"{size}-ceiling"]
        above = a["peak"] - a["idle"]
        verdict = "met" if ratio >= THROUGHPUT_GOAL else f"missed by {THROUGHPUT_GOAL - ratio:.2f}"
        low, high = raw.get(f"{size}-paired-range", (math.nan, math.nan))
        section.notes.append(
            f"Goal (a) >= 0.9 x (b) at {size // MiB} MiB: ratio of medians {ratio:.2f}, "
            f"{verdict}. Run by run (a and b in the same round) the ratio's median is "
            f"{raw.get(f'{size}-paired', math.nan):.2f}, ranging {low:.2f} to {high:.2f}."
        )
        if have_rclone and f"{size}-rclone" in raw:
            c = raw[f"{size}-rclone"]["speed"]
            beat = "met" if a["speed"] > c else f"missed: (a) is {a['speed'] / c:.2f} x (c)"
            section.notes.append(
                f"Goal (a) beats (c) at {size // MiB} MiB: {fmt(a['speed'])} vs {fmt(c)} MiB/s, "
                f"{beat}."
            )
        elif not have_rclone:
            section.notes.append("Goal (a) beats (c): not measured, rclone is missing.")
        mem = "met" if above < MEMORY_GOAL else f"missed by {mib(above - MEMORY_GOAL)} MiB"
        section.notes.append(
            f"Goal peak RSS above idle < 64 MiB at {size // MiB} MiB: {mib(above)} MiB, {mem}."
        )
    section.notes.append(
        "Why (a) trails (b): moto is the bottleneck of every method. Its CPU time per "
        "transfer (column) is about the transfer's wall time, one core under its GIL, and "
        "it varies from run to run for the same bytes. On top of that (a) reads one HTTP "
        "stream: s3transfer must read the first 8 MiB before it knows the upload is "
        "multipart, and the parts start one after another as the bytes arrive, where "
        "upload_file reads all parts from disk at once (a 30 MiB timeline: Create at 14 ms "
        "and parts at 22-67 ms, against 1 ms and 7-9 ms). rclone sends anything under its "
        "200 MiB upload_cutoff as one PUT, so at 30 MiB it skips moto's multipart "
        "completion (80-120 ms of a 200 ms copy here)."
    )
    section.notes.append(
        "Transfer settings tried and not kept (earlier runs of this part): 5 MiB parts x 6 "
        "in flight, same memory but slower (median 3.09 s vs 2.74 s for 300 MiB: more "
        "requests); more parts in flight cost each one its size plus ~3 MiB (the malloc arena "
        "of its upload thread) and go past 64 MiB; hashing each part on a helper thread while "
        "the next one is read made no difference (30 MiB: median 0.214 s before, 0.212 s "
        "after). Reading is not the limit: the download alone streams at ~4 GiB/s and sha256 "
        "runs at ~1.9 GiB/s."
    )
    sizes = sorted(results)
    if len(sizes) == 2:
        small, big = (raw[f"{s}-archive"] for s in sizes)
        low, high = small["peak"] - small["idle"], big["peak"] - big["idle"]
        same = high < MEMORY_GOAL and low < MEMORY_GOAL
        section.notes.append(
            f"Memory independent of size: {mib(low)} MiB above idle at {sizes[0] // MiB} MiB, "
            f"{mib(high)} MiB at {sizes[1] // MiB} MiB (10 x the bytes). A 30 MiB video has "
            "4 parts, fewer than the buffer holds (BUFFERED_PARTS queued or in flight plus "
            "the one being read); from there on the buffer is full and memory stays flat "
            "whatever the size "
            f"({'met' if same else 'missed'}: under 64 MiB at both sizes)."
        )
