"""Memory and process figures read from /proc (Linux)."""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path


def status_kib(pid: int | str = "self") -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB; empty when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {}
    for name in ("VmRSS", "VmHWM"):
        match = re.search(rf"^{name}:\s+(\d+)", text, re.MULTILINE)
        if match:
            out[name] = int(match.group(1))
    return out


def rss_bytes(pid: int | str = "self") -> int:
    return status_kib(pid).get("VmRSS", 0) * 1024


def peak_bytes(pid: int | str = "self") -> int:
    return status_kib(pid).get("VmHWM", 0) * 1024


def reset_peak() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False if unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def children(pid: int) -> list[int]:
    """Direct children of `pid`."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


def tree_rss_bytes(pid: int) -> tuple[int, int]:
    """(RSS of `pid` itself, RSS of `pid` plus all its descendants)."""
    own = rss_bytes(pid)
    return own, own + sum(rss_bytes(child) for child in tree_pids(pid)[1:])


def machine() -> dict[str, str]:
    """nproc, memory and CPU model of this machine."""
    info = {"nproc": str(os.cpu_count())}
    with contextlib.suppress(OSError):
        mem = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        if mem:
            info["memory"] = f"{int(mem.group(1)) / 1024 / 1024:.1f} GiB"
    with contextlib.suppress(OSError):
        model = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
        if model:
            info["cpu"] = model.group(1).strip()
    with contextlib.suppress(OSError):
        info["load average before the run"] = " ".join(
            Path("/proc/loadavg").read_text().split()[:3]
        )
    return info


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by one process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def tree_pids(pid: int) -> list[int]:
    """`pid` and all its descendants (at most 1,000), `pid` first."""
    out: list[int] = []
    stack = [pid]
    while stack and len(out) < 1000:
        current = stack.pop()
        if current in out:
            continue
        out.append(current)
        stack += children(current)
    return out


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(p) for p in tree_pids(pid))
