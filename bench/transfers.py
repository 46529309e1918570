"""The throughput part's processes: bench.fileserver and moto (TCP_NODELAY, in memory), and
one transfer at a time in a fresh child process (bench.archive_child, or rclone), with its
wall time, exit status, peak RSS and CPU, and moto's CPU over it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3

from bench.common import child_env
from bench.procstat import cpu_seconds
from bench.stack import NoDelayS3
from worker.dev.stack import Process, free_port, port_open, wait_until

BUCKET = "bench"
RCLONE_REMOTE = "benchs3"
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


class Transfers:
    """The servers a transfer needs, and each kind of transfer, run in a child process."""

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
