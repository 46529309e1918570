"""Redis Sentinel: the master is killed under a live worker and beat, Sentinel promotes the
replica, and every job in flight is still archived once.

A real topology on loopback: a redis-server master and a replica (both with config/redis.conf,
like the local stack), three redis-sentinel processes with a quorum of 2, passwords on the
master, the replica and the sentinels. The worker and beat run the Procfile's commands with
a sentinel:// REDIS_URL; S3 and the Akool simulator are the session stack's.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from redis.sentinel import Sentinel

from tests.integration.conftest import (
    Deployment,
    procfile_worker_env,
    start_procfile_beat,
    start_procfile_workers,
    video_url,
)
from tests.integration.test_faults import FAST, RECOVERY_TIMEOUT_SECONDS, assert_archived_once
from worker.dev.demo import procfile_argv
from worker.dev.processes import Process, free_port, port_open, wait_until
from worker.dev.stack import RedisServer, Stack, find_redis_config
from worker.errors import StoreUnavailable
from worker.store.jobs import Job, JobStore

pytestmark = pytest.mark.integration

MASTER_NAME = "lipsync-test"
# Test-only passwords of a loopback topology that lives for one test.
REDIS_PASSWORD = "master-pw"  # noqa: S105
SENTINEL_PASSWORD = "sentinel-pw"  # noqa: S105
DB = 3  # not 0, to show every client (broker, backend, job store) uses the URL's database
# Sentinel notices a dead master after DOWN_AFTER_MS; a failover that stalls is retried
# after twice FAILOVER_TIMEOUT_MS. Both short, so the failover takes seconds.
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
START_SECONDS = 30.0
FAILOVER_SECONDS = 45.0


def sentinel_config(port: int, master_port: int) -> str:
    """A writable sentinel.conf (Sentinel rewrites it) watching the master on loopback."""
    return "\n".join(
        [
            f"port {port}",
            "bind 127.0.0.1",
            "daemonize no",
            "sentinel resolve-hostnames no",
            # The sentinels' own password; they use it with each other too.
            f"requirepass {SENTINEL_PASSWORD}",
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2",
            f"sentinel auth-pass {MASTER_NAME} {REDIS_PASSWORD}",
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {MASTER_NAME} 1",
            "",
        ]
    )


@dataclass
class SentinelTopology:
    """A master, its replica and three sentinels, each in a directory of its own."""

    directory: Path
    master: RedisServer
    replica: RedisServer
    sentinel_ports: list[int] = field(default_factory=list)
    sentinels: list[Process] = field(default_factory=list)

    @property
    def url(self) -> str:
        """REDIS_URL in kombu's format; each sentinel names the same database and password."""
        return ";".join(
            f"sentinel://:{REDIS_PASSWORD}@127.0.0.1:{port}/{DB}" for port in self.sentinel_ports
        )

    def sentinel(self) -> Sentinel:
        """A client of the sentinels, as the service builds one (bounded timeouts)."""
        return Sentinel(
            [("127.0.0.1", port) for port in self.sentinel_ports],
            sentinel_kwargs={"password": SENTINEL_PASSWORD, "socket_timeout": 2},
            socket_timeout=5,
            socket_connect_timeout=2,
        )

    def master_client(self) -> redis.Redis:
        """The test's own client of whichever server is master now."""
        return self.sentinel().master_for(MASTER_NAME, db=DB, password=REDIS_PASSWORD)

    def master_port(self) -> int:
        return int(self.sentinel().discover_master(MASTER_NAME)[1])

    def start_sentinel(self, number: int) -> None:
        port = free_port()
        directory = self.directory / f"sentinel-{number}"
        directory.mkdir()
        config = directory / "sentinel.conf"
        config.write_text(sentinel_config(port, self.master.port))
        binary = shutil.which("redis-sentinel")
        assert binary, "redis-sentinel is not installed (apt-get install redis-sentinel)"
        argv = [binary, str(config), "--dir", str(directory)]
        process = Process(f"sentinel-{number}", argv, directory / "sentinel.log").start()
        self.sentinel_ports.append(port)
        self.sentinels.append(process)
        wait_until(lambda: port_open(port), START_SECONDS, f"redis-sentinel {number}")

    def settled(self) -> bool:
        """Every sentinel knows the replica (in sync) and the two other sentinels."""
        for port in self.sentinel_ports:
            client = redis.Redis(port=port, password=SENTINEL_PASSWORD, socket_timeout=2)
            with contextlib.closing(client):
                replicas = client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
                others = client.execute_command("SENTINEL", "SENTINELS", MASTER_NAME)
            if len(others) != 2 or len(replicas) != 1:
                return False
        replica = redis.Redis(port=self.replica.port, password=REDIS_PASSWORD, socket_timeout=2)
        with contextlib.closing(replica):
            return bool(replica.info("replication")["master_link_status"] == "up")

    def stop(self) -> None:
        for process in self.sentinels:
            process.stop()
        self.replica.stop()
        self.master.stop()


def own_config(directory: Path) -> Path:
    """A copy of the project's redis.conf in `directory`: Sentinel's CONFIG REWRITE (at a
    promotion) rewrites the file a server was started with, never the checkout's."""
    directory.mkdir()
    return Path(shutil.copy(find_redis_config(), directory / "redis.conf"))


@contextlib.contextmanager
def sentinel_topology() -> Iterator[SentinelTopology]:
    """Start the master, the replica and three sentinels; stop them all on exit."""
    directory = Path(tempfile.mkdtemp(prefix="lipsync-sentinel-"))
    auth = ["--requirepass", REDIS_PASSWORD, "--masterauth", REDIS_PASSWORD]
    master = RedisServer(
        directory / "master", extra_args=auth, config=own_config(directory / "master")
    )
    replica = RedisServer(
        directory / "replica",
        extra_args=[*auth, "--replicaof", "127.0.0.1", str(master.port)],
        config=own_config(directory / "replica"),
    )
    topology = SentinelTopology(directory, master, replica)
    try:
        master.start()
        replica.start()
        for number in range(3):
            topology.start_sentinel(number)
        wait_until(topology.settled, START_SECONDS, "the sentinels to know each other")
        yield topology
    finally:
        topology.stop()
        shutil.rmtree(directory, ignore_errors=True)


class SentinelDeployment(Deployment):
    """A worker and a beat on REDIS_URL=sentinel://..., read through the test's own client."""

    def __init__(self, stack: Stack, env: dict[str, str], name: str, client: redis.Redis):
        self.stack = stack
        self.env = env
        self.name = name
        self.workers = start_procfile_workers(stack, env, name)
        self.beat = start_procfile_beat(stack, env, name)
        self.redis = client
        self.store = JobStore(client, retention_seconds=3600)

    def wait(self, job_id: str, timeout: float = RECOVERY_TIMEOUT_SECONDS) -> Job:
        """The job once final; a read that meets the failover is tried again (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(StoreUnavailable):
                job = self.store.get(job_id)
                if job.is_final:
                    return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} not final after {timeout} s\n{self.log_text()[-4000:]}")


@pytest.fixture
def topology() -> Iterator[SentinelTopology]:
    checkout_config = find_redis_config().read_bytes()
    with sentinel_topology() as running:
        yield running
    assert find_redis_config().read_bytes() == checkout_config, "Sentinel rewrote redis.conf"


@pytest.fixture
def sentinel_deployment(stack: Stack, topology: SentinelTopology) -> Iterator[SentinelDeployment]:
    env = dict(
        stack.env,
        REDIS_URL=topology.url,
        REDIS_SENTINEL_MASTER=MASTER_NAME,
        REDIS_SENTINEL_PASSWORD=SENTINEL_PASSWORD,
        **FAST,
    )
    deployment = SentinelDeployment(stack, env, "sentinel", topology.master_client())
    try:
        yield deployment
    finally:
        deployment.stop()


def test_jobs_in_flight_survive_a_failover_of_the_redis_master_and_are_archived_once(
    topology: SentinelTopology, sentinel_deployment: SentinelDeployment
) -> None:
    deployment = sentinel_deployment
    old_master = topology.master.port
    videos = [video_url(seconds=6, polls=1) for _ in range(4)]
    job_ids = [deployment.submit(v) for v in videos]
    wait_until(lambda: all(deployment.store.get(j).polls >= 1 for j in job_ids), 30, "polling")

    topology.master.stop(signal.SIGKILL)
    wait_until(
        lambda: topology.master_port() == topology.replica.port,
        FAILOVER_SECONDS,
        "Sentinel to promote the replica",
    )

    for job_id, video in zip(job_ids, videos, strict=True):
        assert_archived_once(deployment, deployment.wait(job_id), video)
    # A job submitted after the failover goes to the new master from end to end.
    late = video_url(polls=1)
    assert_archived_once(deployment, deployment.wait(deployment.submit(late)), late)
    assert topology.master_port() != old_master
    assert all(w.alive for w in deployment.workers)
    assert deployment.beat is not None and deployment.beat.alive
    logs = deployment.log_text() + deployment.beat.log_text()
    assert REDIS_PASSWORD not in logs and SENTINEL_PASSWORD not in logs
    # The broker's queues live in the URL's database with the job records, not in db 0.
    assert deployment.redis.exists("_kombu.binding.lipsync.akool")
    new_master = redis.Redis(port=topology.replica.port, password=REDIS_PASSWORD)
    with contextlib.closing(new_master):
        assert new_master.dbsize() == 0


def test_a_worker_refuses_to_start_when_a_replica_sentinel_may_promote_could_evict_jobs(
    stack: Stack, topology: SentinelTopology, tmp_path: Path
) -> None:
    replica = redis.Redis(port=topology.replica.port, password=REDIS_PASSWORD, socket_timeout=5)
    with contextlib.closing(replica):
        replica.config_set("maxmemory-policy", "volatile-lru")
    argv = procfile_argv("worker")
    assert argv is not None
    env = dict(
        stack.env,
        REDIS_URL=topology.url,
        REDIS_SENTINEL_MASTER=MASTER_NAME,
        REDIS_SENTINEL_PASSWORD=SENTINEL_PASSWORD,
    )
    done = subprocess.run(
        argv,
        env=procfile_worker_env(env),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    address = f"127.0.0.1:{topology.replica.port}"
    assert f"Redis replica {address}'s maxmemory-policy is volatile-lru" in done.stderr
    assert "noeviction" in done.stderr and "ready" not in done.stdout + done.stderr
    assert REDIS_PASSWORD not in done.stdout + done.stderr
