"""The `lipsync` command: submit jobs (one, or a CSV file of them), adopt one submitted to
Akool elsewhere, show or list them, cancel one, or run the local demo."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from worker import deps
from worker.api import archive_akool_job, cancel_job, get_job
from worker.cli.batch import run_batch
from worker.cli.kinds import (
    ARGS,
    KIND_NAMES,
    LISTED_KINDS,
    every_arg,
    read_args,
    submit_kind,
)
from worker.cli.progress import describe, wait_for
from worker.clock import wall_clock
from worker.dev.demo import run_demo
from worker.errors import ConfigError, LipsyncError
from worker.names import LIPSYNC_KIND
from worker.net import escape_controls
from worker.status import FILTER_WINDOW, JobStatus
from worker.store import Job
from worker.sweeper import at_risk
from worker.tasks import retry_job

# `jobs --meta` looks through as many of the newest jobs as the dashboard's filters do.
META_WINDOW = FILTER_WINDOW

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def meta_pair(text: str) -> tuple[str, str]:
    """`--meta NAME=VALUE` as (NAME, VALUE); a usage error without an "="."""
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text[:80]!r}")
    return name, value


def metadata(pairs: list[tuple[str, str]] | None) -> dict[str, str] | None:
    """The --meta pairs as a dict (None without any); ValueError for a name given twice."""
    if not pairs:
        return None
    out: dict[str, str] = {}
    for name, value in pairs:
        if name in out:
            raise ValueError(f"--meta {name[:80]!r} is given twice")
        out[name] = value
    return out


def _contract_flags(command: argparse.ArgumentParser) -> None:
    """The caller's contract: what `submit` and `adopt` both take."""
    command.add_argument(
        "--idempotency-key", metavar="KEY", default=None, help="the same key again: the same job"
    )
    command.add_argument(
        "--meta",
        action="append",
        type=meta_pair,
        metavar="NAME=VALUE",
        help="metadata carried by the job (repeatable)",
    )
    command.add_argument(
        "--key",
        dest="archive_key",
        metavar="PATH",
        default=None,
        help="archive the video as ARCHIVE_PREFIX + PATH (default: <job id>.mp4)",
    )
    command.add_argument("--wait", action="store_true", help="show progress until it ends")
    command.add_argument("--timeout", type=float, default=None, help="give up waiting after S s")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lipsync", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    submit = sub.add_parser("submit", help="enqueue a video job and print its id")
    submit.add_argument("video_url", nargs="?", help="lip-sync's video (or --video)")
    submit.add_argument("audio_url", nargs="?", help="lip-sync's audio (or --audio)")
    _kind_flags(submit)
    submit.add_argument("--webhook-url", default=None, help="passed to Akool as webhookUrl")
    submit.add_argument(
        "--batch",
        metavar="FILE.csv",
        default=None,
        help="one job per row; columns video_url, audio_url and optionally kind (then "
        "each kind's arguments), idempotency_key, archive_key, meta.NAME",
    )
    _contract_flags(submit)
    status = sub.add_parser("status", help="show a job's record")
    status.add_argument("job_id")
    status.add_argument("--json", action="store_true", help="print the record as JSON")
    jobs = sub.add_parser("jobs", help="list recent jobs as a table")
    jobs.add_argument(
        "--status",
        choices=[s.value for s in JobStatus],
        default=None,
        help="only jobs in this state",
    )
    jobs.add_argument("--kind", choices=LISTED_KINDS, default=None, help="only jobs of this kind")
    jobs.add_argument(
        "--at-risk", action="store_true", help="only jobs whose video Akool deletes within 24 h"
    )
    jobs.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    jobs.add_argument(
        "--meta",
        action="append",
        type=meta_pair,
        metavar="NAME=VALUE",
        help=f"only jobs with this metadata (repeatable; among the newest {META_WINDOW})",
    )
    url = sub.add_parser("url", help="print a presigned download URL of an archived video")
    url.add_argument("job_id")
    url.add_argument("--expires", type=int, default=3600, help="seconds the URL stays valid")
    retry = sub.add_parser("retry", help="re-drive a failed or stuck job from where it stopped")
    retry.add_argument("job_id")
    cancel = sub.add_parser("cancel", help="cancel a job that has not ended")
    cancel.add_argument("job_id")
    adopt = sub.add_parser("adopt", help="archive a job submitted to Akool by other code")
    adopt.add_argument("akool_id")
    _contract_flags(adopt)
    demo = sub.add_parser("demo", help="run one job through a private local stack")
    demo.add_argument("--size", type=int, default=None, help="bytes of the simulated video")
    return parser


def _kind_flags(submit: argparse.ArgumentParser) -> None:
    """`--kind` and every kind's own flags (worker/cli/kinds.py), each given once."""
    submit.add_argument(
        "--kind", choices=KIND_NAMES, default=None, help="the kind of video (default lipsync)"
    )
    for flag, arg in every_arg().items():
        kinds = "--kind " + ", ".join(k for k in KIND_NAMES if flag in _flags_of(k))
        extra: dict[str, Any] = {"metavar": arg.metavar}
        if arg.name == "lipsync":  # a switch on the command line, true/false in a batch
            extra = {"action": "store_const", "const": "true"}
        submit.add_argument(flag, dest="arg_" + arg.name, default=None, help=kinds, **extra)


def _flags_of(kind: str) -> list[str]:
    return [arg.flag for arg in ARGS[kind]]


def kind_texts(args: argparse.Namespace) -> dict[str, str]:
    """The kind flags given (argument name -> text), the positional lip-sync URLs among
    them; `--elements FILE` read. ValueError when the URLs are given twice, or
    positionally for another kind."""
    kind = args.kind or LIPSYNC_KIND
    texts = {
        arg.name: value
        for arg in every_arg().values()
        if (value := getattr(args, "arg_" + arg.name)) is not None
    }
    positional = [url for url in (args.video_url, args.audio_url) if url is not None]
    if positional and kind != LIPSYNC_KIND:
        flags = ", ".join(_flags_of(kind))
        raise ValueError(f"--kind {kind} takes its arguments as flags ({flags}), not positionally")
    if positional and {"video_url", "audio_url"} & texts.keys():
        raise ValueError("give the URLs as VIDEO_URL AUDIO_URL or as --video and --audio")
    texts.update(zip(("video_url", "audio_url"), positional, strict=False))
    if kind == LIPSYNC_KIND and not {"video_url", "audio_url"} <= texts.keys():
        raise ValueError("submit needs VIDEO_URL and AUDIO_URL (or --batch FILE.csv)")
    if "elements" in texts:
        texts["elements"] = _read_file("--elements", texts["elements"])
    return texts


def _read_file(flag: str, path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) else "not UTF-8"
        raise ValueError(f"{flag} {path[:200]!r} cannot be read: {why}") from None


def _cmd_submit(args: argparse.Namespace) -> int:
    if args.batch is not None:
        return _cmd_batch(args)
    kind = args.kind or LIPSYNC_KIND
    job_id = submit_kind(
        kind,
        read_args(kind, kind_texts(args), flags=True),
        webhook_url=args.webhook_url,
        idempotency_key=args.idempotency_key,
        metadata=metadata(args.meta),
        archive_key=args.archive_key,
    )
    return _follow(job_id, args)


def _follow(job_id: str, args: argparse.Namespace) -> int:
    """Print the job's id and, with --wait, its progress; the exit of how it ended."""
    print(job_id, flush=True)
    if not args.wait:
        return EXIT_OK
    job = wait_for(job_id, timeout=args.timeout)
    return EXIT_OK if job.status == JobStatus.ARCHIVED else EXIT_FAILED


def _cmd_batch(args: argparse.Namespace) -> int:
    """`submit --batch FILE.csv`: its arguments come from the file (worker/cli/batch.py)."""
    given = [args.video_url, args.webhook_url, args.idempotency_key, args.meta, args.archive_key]
    given += [args.kind] + [getattr(args, "arg_" + a.name) for a in every_arg().values()]
    if any(value is not None for value in given):
        raise ValueError("with --batch, the kinds, URLs, keys and metadata come from the file")
    ok = run_batch(args.batch, wait=args.wait, timeout=args.timeout)
    return EXIT_OK if ok else EXIT_FAILED


def _cmd_adopt(args: argparse.Namespace) -> int:
    job_id = archive_akool_job(
        args.akool_id,
        idempotency_key=args.idempotency_key,
        metadata=metadata(args.meta),
        archive_key=args.archive_key,
    )
    return _follow(job_id, args)


def _cmd_cancel(args: argparse.Namespace) -> int:
    job = cancel_job(args.job_id)
    if job.status == JobStatus.CANCELLED:
        print(describe(job))
        return EXIT_OK
    print(f"{describe(job)}\n  it had ended already: nothing to cancel")
    return EXIT_OK if job.is_final else EXIT_FAILED


def _cmd_status(args: argparse.Namespace) -> int:
    try:
        job = get_job(args.job_id)
    except KeyError:
        print(f"lipsync: no job {args.job_id!r} (unknown or expired)", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(job.to_dict(), indent=2, sort_keys=True))
    else:
        print(describe(job))
        print(f"  created {job.created_at.isoformat()}", end="")
        print(
            f", Akool deletes the result at {job.expires_at.isoformat()}" if job.expires_at else ""
        )
        for line in kind_lines(job) + contract_lines(job):
            print(f"  {line}")
    return EXIT_OK


def kind_lines(job: Job) -> list[str]:
    """The job's kind and, for a kind other than lip-sync, the body Akool got, as ASCII
    JSON: its prompt or text came from the caller, and must not drive the terminal."""
    lines = [f"kind: {escape_controls(job.kind)}"]
    if job.body is not None:
        lines.append(f"Akool body: {json.dumps(job.body, sort_keys=True, ensure_ascii=True)}")
    return lines


def contract_lines(job: Job) -> list[str]:
    """What the caller asked for beyond the URLs: its keys, whether the job was adopted,
    and its metadata (one `meta.NAME: VALUE` line each, by name); then its extra result
    files, archived (one `extra file FIELD: URI` line each). Control characters are
    escaped: metadata may come from the application's own users, and must not drive the
    operator's terminal."""
    lines = []
    if job.idempotency_key is not None:
        lines.append(f"idempotency key: {escape_controls(job.idempotency_key)}")
    if job.archive_key is not None:
        lines.append(f"archive key: {escape_controls(job.archive_key)}")
    if job.adopted_ts is not None:
        lines.append(f"adopted: submitted to Akool by other code (Akool id {job.akool_id})")
    for name, value in sorted((job.metadata or {}).items()):
        lines.append(f"meta.{escape_controls(name)}: {escape_controls(value)}")
    # A kind's extra result files, archived beside its video.
    for field, uri in sorted((job.assets or {}).items()):
        lines.append(f"extra file {field}: {escape_controls(uri)}")
    return lines


def has_meta(job: Job, pairs: list[tuple[str, str]] | None) -> bool:
    """True when the job's metadata holds every NAME=VALUE pair (none: any job)."""
    held = job.metadata or {}
    return all(name in held and held[name] == value for name, value in pairs or ())


def listed(job: Job, args: argparse.Namespace) -> bool:
    """True when the job is in the state and of the kind `jobs --status/--kind` ask for."""
    return (args.status is None or job.status == args.status) and (
        args.kind is None or job.kind == args.kind
    )


def _job_rows(args: argparse.Namespace) -> list[Job]:
    store = deps.job_store()
    if args.at_risk:
        risky = at_risk(store, now=wall_clock())
        return [job for job in risky if has_meta(job, args.meta) and listed(job, args)][
            : args.limit
        ]
    if args.meta:
        return _meta_rows(args)
    filtered = args.status is not None or args.kind is not None
    jobs = []
    for job_id in store.recent_ids(limit=10 * args.limit if filtered else args.limit):
        job = store.read(job_id)  # None: expired, or unreadable (logged once)
        if job is not None and listed(job, args):
            jobs.append(job)
    return jobs[: args.limit]


def _meta_rows(args: argparse.Namespace) -> list[Job]:
    """`jobs --meta`: the matches among the newest META_WINDOW jobs, read in one round
    trip; a line on stderr when older jobs were left out."""
    store = deps.job_store()
    ids = store.newest(META_WINDOW)
    if len(ids) == META_WINDOW:
        print(f"lipsync: looked through the newest {META_WINDOW} jobs only", file=sys.stderr)
    found = [
        job
        for job in store.read_many(ids)
        if job is not None and listed(job, args) and has_meta(job, args.meta)
    ]
    return found[: args.limit]


def format_table(jobs: list[Job]) -> str:
    """Jobs as an aligned text table, one row each."""
    header = ("JOB", "STATUS", "KIND", "CREATED", "AKOOL DELETES", "ARCHIVE / ERROR / WAIT")
    rows = [header] + [
        (
            j.id,
            j.status,
            escape_controls(j.kind),
            j.created_at.strftime("%Y-%m-%d %H:%M"),
            j.expires_at.strftime("%Y-%m-%d %H:%M") if j.expires_at else "-",
            (j.archive_uri or j.error or (f"waiting: {j.waiting}" if j.waiting else ""))[:80],
        )
        for j in jobs
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1]
        for r in rows
    )


def _cmd_jobs(args: argparse.Namespace) -> int:
    jobs = _job_rows(args)
    print(format_table(jobs) if jobs else "no jobs")
    return EXIT_OK


def _cmd_url(args: argparse.Namespace) -> int:
    job = get_job(args.job_id)
    if job.status != JobStatus.ARCHIVED or not job.archive_uri:
        print(f"lipsync: job {job.id} is {job.status}, not archived", file=sys.stderr)
        return EXIT_FAILED
    bucket, _, key = job.archive_uri.removeprefix("s3://").partition("/")
    s3 = deps.s3_client(deps.settings().s3_endpoint_url)
    params = {"Bucket": bucket, "Key": key}
    print(s3.generate_presigned_url("get_object", Params=params, ExpiresIn=args.expires))
    return EXIT_OK


def _cmd_retry(args: argparse.Namespace) -> int:
    step = retry_job(args.job_id)
    print(f"{args.job_id}: re-driven from its {step} step")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    return EXIT_OK if run_demo(size=args.size) else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `lipsync` console script."""
    args = _parser().parse_args(argv)
    handlers = {
        "submit": _cmd_submit,
        "status": _cmd_status,
        "jobs": _cmd_jobs,
        "url": _cmd_url,
        "retry": _cmd_retry,
        "cancel": _cmd_cancel,
        "adopt": _cmd_adopt,
        "demo": _cmd_demo,
    }
    try:
        return handlers[args.command](args)
    except (ConfigError, ValueError) as e:
        print(f"lipsync: {e}", file=sys.stderr)
        return EXIT_USAGE
    except LipsyncError as e:
        # Redis or S3 out of reach, for example: one line saying what, not a traceback.
        print(f"lipsync: {e}", file=sys.stderr)
        return EXIT_FAILED
    except KeyError as e:
        print(f"lipsync: no job {e.args[0]!r} (unknown or expired)", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
