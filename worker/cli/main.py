"""The `lipsync` command: submit a job, show its status, or run the local demo."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from worker import deps
from worker.api import get_job, submit_lipsync
from worker.cli.progress import describe, wait_for
from worker.clock import wall_clock
from worker.dev.demo import run_demo
from worker.errors import ConfigError, LipsyncError
from worker.status import JobStatus
from worker.store import Job
from worker.sweeper import at_risk
from worker.tasks import retry_job

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lipsync", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    submit = sub.add_parser("submit", help="enqueue a lip-sync job and print its id")
    submit.add_argument("video_url")
    submit.add_argument("audio_url")
    submit.add_argument("--webhook-url", default=None, help="passed to Akool as webhookUrl")
    submit.add_argument("--wait", action="store_true", help="show progress until it ends")
    submit.add_argument("--timeout", type=float, default=None, help="give up waiting after S s")
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
    jobs.add_argument(
        "--at-risk", action="store_true", help="only jobs whose video Akool deletes within 24 h"
    )
    jobs.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    url = sub.add_parser("url", help="print a presigned download URL of an archived video")
    url.add_argument("job_id")
    url.add_argument("--expires", type=int, default=3600, help="seconds the URL stays valid")
    retry = sub.add_parser("retry", help="re-drive a failed or stuck job from where it stopped")
    retry.add_argument("job_id")
    demo = sub.add_parser("demo", help="run one job through a private local stack")
    demo.add_argument("--size", type=int, default=None, help="bytes of the simulated video")
    return parser


def _cmd_submit(args: argparse.Namespace) -> int:
    job_id = submit_lipsync(args.video_url, args.audio_url, webhook_url=args.webhook_url)
    print(job_id, flush=True)
    if not args.wait:
        return EXIT_OK
    job = wait_for(job_id, timeout=args.timeout)
    return EXIT_OK if job.status == JobStatus.ARCHIVED else EXIT_FAILED


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
    return EXIT_OK


def _job_rows(args: argparse.Namespace) -> list[Job]:
    store = deps.job_store()
    if args.at_risk:
        return at_risk(store, now=wall_clock())[: args.limit]
    jobs = []
    for job_id in store.recent_ids(limit=args.limit if not args.status else 10 * args.limit):
        job = store.read(job_id)  # None: expired, or unreadable (logged once)
        if job is not None and (args.status is None or job.status == args.status):
            jobs.append(job)
    return jobs[: args.limit]


def format_table(jobs: list[Job]) -> str:
    """Jobs as an aligned text table, one row each."""
    header = ("JOB", "STATUS", "CREATED", "AKOOL DELETES", "ARCHIVE / ERROR / WAIT")
    rows = [header] + [
        (
            j.id,
            j.status,
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
