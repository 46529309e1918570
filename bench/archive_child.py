"""One transfer in a fresh process, for bench.archive: prints one JSON line of figures.

    python -m bench.archive_child MODE URL ENDPOINT BUCKET KEY [--file PATH] [tuning...]

MODE is `archive` (the worker's archive step), `upload_file` (boto3 from local disk) or
`naive` (requests' .content then put_object). The process imports and builds everything
first, records its RSS ("idle"), resets its peak RSS counter, runs the transfer once and
reports seconds, bytes, sha256, idle RSS and the peak RSS reached during the transfer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import boto3
import requests
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from bench.procstat import peak_bytes, reset_peak, rss_bytes
from worker import archive as archive_module
from worker.archive import Archiver, default_transfer_config
from worker.deps import s3_client

JOB_ID = "0123456789abcdef0123456789abcdef"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("archive", "upload_file", "naive", "warm"))
    parser.add_argument("url")
    parser.add_argument("endpoint")
    parser.add_argument("bucket")
    parser.add_argument("key")
    parser.add_argument("--file", default=None)
    # Tuning experiments on the archive path (defaults: the project's settings).
    parser.add_argument("--part-mib", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=None)
    parser.add_argument("--buffered", type=int, default=None)
    parser.add_argument("--pairs", type=int, default=3, help="warm mode: rounds of (a) and (b)")
    parser.add_argument(
        "--unsigned-payload", action="store_true", help="S3 client without SigV4 body hashing"
    )
    return parser.parse_args(argv)


def _archiver(args: argparse.Namespace, client: Any) -> Archiver:
    config = default_transfer_config()
    if args.part_mib or args.concurrency or args.buffered:
        part = (args.part_mib or archive_module.PART_SIZE_BYTES // 2**20) * 2**20
        config = TransferConfig(
            multipart_threshold=part,
            multipart_chunksize=part,
            max_concurrency=args.concurrency or archive_module.UPLOAD_CONCURRENCY,
        )
        config.max_in_memory_upload_chunks = args.buffered or archive_module.BUFFERED_PARTS
    return Archiver(client, args.bucket, allowed_hosts=("127.0.0.1",), transfer_config=config)


def _warm(args: argparse.Namespace, client: Any) -> None:
    """(a) and (b) taking turns in one long-lived process, as a worker runs them: a warm
    connection pool and allocator. One round of each first, not counted."""
    archiver = _archiver(args, client)
    times: dict[str, list[float]] = {"archive": [], "upload_file": []}
    for round_number in range(args.pairs + 1):
        for mode in ("archive", "upload_file") if round_number % 2 else ("upload_file", "archive"):
            started = time.perf_counter()
            if mode == "archive":
                key = archiver.archive(JOB_ID, "bench", args.url).key
            else:
                client.upload_file(args.file, args.bucket, args.key)
                key = args.key
            if round_number:
                times[mode].append(time.perf_counter() - started)
            client.delete_object(Bucket=args.bucket, Key=key)
    print(json.dumps({"mode": "warm", "times": times}), flush=True)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    client = s3_client(args.endpoint)
    if args.unsigned_payload:
        config = client.meta.config.merge(Config(s3={"payload_signing_enabled": False}))
        client = boto3.client("s3", endpoint_url=args.endpoint, config=config)
    client.list_buckets()  # open a connection and load the model before measuring idle
    if args.mode == "warm":
        _warm(args, client)
        return
    archiver = _archiver(args, client) if args.mode == "archive" else None
    session = requests.Session()
    idle = rss_bytes()
    peak_reset = reset_peak()
    started = time.perf_counter()
    sha256 = ""
    if args.mode == "archive":
        assert archiver is not None
        result = archiver.archive(JOB_ID, "bench", args.url)
        size, sha256 = result.size, result.sha256
        key = result.key
    elif args.mode == "upload_file":
        client.upload_file(args.file, args.bucket, args.key)
        size, key = os.path.getsize(args.file), args.key
    else:
        body = session.get(args.url, timeout=60).content
        client.put_object(Bucket=args.bucket, Key=args.key, Body=body)
        size, key = len(body), args.key
        del body
    seconds = time.perf_counter() - started
    peak = peak_bytes()
    stored = client.head_object(Bucket=args.bucket, Key=key)["ContentLength"]
    figures = {
        "mode": args.mode,
        "seconds": seconds,
        "bytes": size,
        "stored_bytes": stored,
        "key": key,
        "sha256": sha256,
        "idle_rss": idle,
        "peak_rss": peak,
        "peak_reset": peak_reset,
    }
    print(json.dumps(figures), flush=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
