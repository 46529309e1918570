"""py-spy helpers: record a process and summarise where its CPU went, as short text."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    """The py-spy executable next to this interpreter, or on PATH; None when missing."""
    local = Path(sys.executable).parent / "py-spy"
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


def record(
    pid: int, seconds: float, out: Path, *, rate: int = 100, subprocesses: bool = False
) -> subprocess.Popen[bytes] | None:
    """Start `py-spy record` on `pid` for at most `seconds` (raw folded stacks); None without
    py-spy. End it early with `stop`."""
    exe = py_spy()
    if exe is None:
        return None
    argv = [exe, "record", "-p", str(pid), "-d", str(max(1, round(seconds))), "-r", str(rate)]
    argv += ["-f", "raw", "-o", str(out), "--nonblocking"]
    if subprocesses:
        argv.append("--subprocesses")
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """Stop a recording early: py-spy writes its file on SIGINT."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def _frame(name: str) -> str:
    return _LINE.sub(")", name.strip())


GENERIC = (
    "threading.py",
    "concurrent/futures/thread.py",
    "runpy",
    "<module>",
    "click/",
    "celery/bin/",
    "celery/__main__",
    "bootsteps.py",
    "billiard/process.py",
    "billiard/pool.py",
    "billiard/popen_fork.py",
    "billiard/context.py",
    "celery/concurrency/",
    "celery/worker/worker.py",
    "celery/worker/consumer/consumer.py",
    "celery/worker/loops.py",
    "kombu/asynchronous/hub.py (Hub.create_loop",
)


def _generic(name: str) -> bool:
    return any(g in name for g in GENERIC) or name.startswith("Hub.create_loop")


def summarise(
    raw: Path,
    *,
    top: int = 12,
    title: str = "",
    select: Callable[[str], bool] | None = None,
) -> str:
    """Top functions by self time and by inclusive time from a py-spy raw file.

    `select`, given the whole folded stack, keeps only matching samples (e.g. one process).
    Inclusive time leaves out the frames every sample has (thread and worker boilerplate).
    """
    if not raw.exists():
        return f"{title}: no profile (py-spy missing or the process ended first)"
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or not stack or (select is not None and not select(stack)):
            continue
        frames = [_frame(f) for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames:
            continue
        n = int(count)
        total += n
        own[frames[-1]] += n
        for name in set(frames):
            if not _generic(name):
                inclusive[name] += n
    if total == 0:
        return f"{title}: no samples"
    lines = [f"{title} ({total} samples on CPU)", "  self time:"]
    lines += [f"    {n / total:6.1%}  {name}" for name, n in own.most_common(top)]
    lines.append("  inclusive time (boilerplate frames left out):")
    lines += [f"    {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    return "\n".join(lines)
