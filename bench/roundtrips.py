"""Redis round trips per job, by step, as bench/trace.py's steps mode records them (the
engine part's counted runs): every task run, and the worker main process's round trips
sampled, Celery's by command."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import fmt
from bench.trace import read_records
from worker.names import ARCHIVE_TASK, POLL_TASK, SUBMIT_TASK

PIPELINE_STEPS = (SUBMIT_TASK, POLL_TASK, ARCHIVE_TASK)
BARE_STEPS = ("bench.noop_first", "bench.noop_second", "bench.noop_third")
MAIN = "worker main process"
# The most common sequences of the service's commands shown for each task.
SEQUENCES_SHOWN = 3
# The counted runs: the worker idle this long before the burst (its idle traffic, measured)
# and after it (the last acknowledgements), in seconds.
COUNT_IDLE_SECONDS = 1.5
COUNT_SETTLE_SECONDS = 1.0


@dataclass(frozen=True)
class StepRun:
    """One task run, as bench/trace.py recorded it in steps mode."""

    start: float
    end: float
    name: str
    state: str
    ours: int
    celery: int
    commands: tuple[str, ...]
    celery_commands: tuple[str, ...]


@dataclass
class StepCount:
    """The round trips of one task name over a counted run."""

    runs: int = 0
    ours: int = 0
    celery: int = 0
    seconds: float = 0.0
    sequences: Counter[str] = field(default_factory=Counter)
    celery_commands: Counter[str] = field(default_factory=Counter)
    states: Counter[str] = field(default_factory=Counter)


@dataclass
class RoundTrips:
    """A counted run's round trips: by task name, and the main process's in the burst."""

    jobs: int
    steps: dict[str, StepCount]
    main_ours: int
    main_celery: int
    main_commands: Counter[str]
    idle_per_second: float

    def ours(self) -> float:
        """The service's round trips per job, all steps and the main process."""
        return (sum(s.ours for s in self.steps.values()) + self.main_ours) / self.jobs

    def celery(self) -> float:
        """Celery's round trips per job: in the tasks, and in the main process."""
        return (sum(s.celery for s in self.steps.values()) + self.main_celery) / self.jobs

    def pool_ms(self) -> float:
        """Wall time the pool processes spent in tasks, per job (ms)."""
        return 1000 * sum(s.seconds for s in self.steps.values()) / self.jobs


def _names(text: str) -> tuple[str, ...]:
    return () if text == "-" else tuple(text.split(","))


def read_steps(directory: Path) -> list[StepRun]:
    """Every task run of a steps-mode trace."""
    return [
        StepRun(float(p[0]), float(p[1]), p[2], p[3], int(p[4]), int(p[5]), *map(_names, p[6:]))
        for p in read_records(directory, "steps")
        if len(p) == 8
    ]


def count_steps(runs: list[StepRun]) -> dict[str, StepCount]:
    """Round trips and wall time by task name."""
    steps: dict[str, StepCount] = {}
    for run in runs:
        step = steps.setdefault(run.name, StepCount())
        step.runs += 1
        step.ours += run.ours
        step.celery += run.celery
        step.seconds += run.end - run.start
        step.sequences[f"{run.state}: {', '.join(run.commands) or 'none'}"] += 1
        step.celery_commands.update(run.celery_commands)
        step.states[run.state] += 1
    return steps


def read_roundtrips(directory: Path, started: float, ended: float, jobs: int) -> RoundTrips:
    """The round trips of the burst that started at `started` and was done at `ended`: task
    runs that started in it, and the main process's counts between the samples around it."""
    samples = sorted(
        (float(p[0]), int(p[1]), int(p[2])) for p in read_records(directory, "redis") if len(p) == 3
    )
    before = [s for s in samples if s[0] <= started]
    after = [s for s in samples if s[0] >= ended + COUNT_SETTLE_SECONDS / 2]
    if not before or not after:
        raise RuntimeError(f"no round-trip samples around the burst in {directory}")
    first, last = before[-1], after[0]
    idle = [s for s in before if s[0] >= started - COUNT_IDLE_SECONDS + 0.2]
    idle_rate = 0.0
    if len(idle) > 1 and idle[-1][0] > idle[0][0]:
        idle_rate = (idle[-1][2] - idle[0][2]) / (idle[-1][0] - idle[0][0])
    commands: Counter[str] = Counter()
    for p in read_records(directory, "broker"):
        if first[0] < float(p[0]) <= last[0]:
            for item in p[1:]:
                name, _, n = item.rpartition("=")
                commands[name] += int(n)
    runs = [r for r in read_steps(directory) if r.start >= started]
    return RoundTrips(
        jobs, count_steps(runs), last[1] - first[1], last[2] - first[2], commands, idle_rate
    )


def per(n: float, jobs: int) -> str:
    return fmt(n / jobs, 2)


def _step_lines(counts: RoundTrips, names: tuple[str, ...]) -> list[str]:
    """Per job: each step's runs, round trips (ours, Celery's), wall time and commands."""
    jobs, lines = counts.jobs, []
    for name in names:
        step = counts.steps.get(name, StepCount())
        wall = 1000 * step.seconds / step.runs if step.runs else float("nan")
        lines.append(
            f"  {name:<18} runs {per(step.runs, jobs)}  ours {per(step.ours, jobs):>5}  "
            f"Celery's {per(step.celery, jobs):>4}  ({fmt(wall, 1)} ms a run)"
        )
        for sequence, n in step.sequences.most_common(SEQUENCES_SHOWN) if step.ours else ():
            lines.append(f"      ours, {n} of {step.runs} runs, {sequence}")
        if step.celery:
            lines.append(f"      Celery's: {_by_command(step.celery_commands, jobs)}")
    for name in sorted(set(counts.steps) - set(names)):
        step = counts.steps[name]
        lines.append(
            f"  {name:<18} runs {per(step.runs, jobs)}  ours {per(step.ours, jobs):>5}  "
            f"Celery's {per(step.celery, jobs):>4}"
        )
    lines.append(
        f"  {MAIN:<18} ours {per(counts.main_ours, jobs)}  Celery's "
        f"{per(counts.main_celery, jobs)}: {_by_command(counts.main_commands, jobs)}"
    )
    lines.append(
        f"  total              ours {fmt(counts.ours(), 2)}  Celery's {fmt(counts.celery(), 2)}"
        f"  (worker idle: {fmt(counts.idle_per_second, 1)} of Celery's a second, included)"
    )
    return lines


def _by_command(commands: Counter[str], jobs: int) -> str:
    """Commands per job, most frequent first: "BRPOP 3.00, MULTI+ZADD+HSET+EXEC 3.00"."""
    return ", ".join(f"{name} {per(n, jobs)}" for name, n in commands.most_common()) or "none"


def roundtrip_text(pipeline: RoundTrips, bare: RoundTrips) -> str:
    """The counted round trips, per job and per chain, as a text block."""
    lines = [f"pipeline, {pipeline.jobs} jobs; per job (runs of each task, round trips):"]
    lines += _step_lines(pipeline, PIPELINE_STEPS)
    lines.append(f"bare chain, {bare.jobs} chains; per chain:")
    lines += _step_lines(bare, BARE_STEPS)
    return "\n".join(lines)
