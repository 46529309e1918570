"""Checks a process makes before it serves: is this Redis safe to keep jobs in?

Job records carry a TTL (JOB_RETENTION_DAYS) and queue messages do not, so a Redis whose
`maxmemory-policy` evicts keys with a TTL (`volatile-*`) deletes exactly the job records
under memory pressure, and an `allkeys-*` policy may delete anything. Only `noeviction`
keeps them: Redis then refuses writes when full, which fails loudly instead of losing jobs.

Redis must also keep what it is told across a restart: with neither the append-only file
(`appendonly yes`) nor RDB snapshots (`save` points), a restart of Redis loses every job in
flight and every queued task, silently. Snapshots alone lose the writes since the last one
(a WARNING says so); the AOF keeps every write (config/redis.conf).

Worker, beat and the web process refuse to start on another policy or without persistence.
A managed Redis may refuse `CONFIG GET`; then a WARNING says what must be true, and the
process goes on.

Behind Sentinel (a sentinel:// REDIS_URL) the client reaches the master Sentinel names, and
every replica Sentinel knows is checked too: a failover promotes one of them.
"""

from __future__ import annotations

import contextlib
import logging

import redis
from redis.sentinel import SentinelConnectionPool

from worker.errors import ConfigError

logger = logging.getLogger(__name__)

SAFE_POLICY = "noeviction"
FIX = (
    "set 'maxmemory-policy noeviction' in redis.conf (config/redis.conf does) or run "
    "CONFIG SET maxmemory-policy noeviction"
)
PERSISTENCE_FIX = (
    "set 'appendonly yes' in redis.conf (config/redis.conf does) or run CONFIG SET appendonly yes"
)


def config_value(client: redis.Redis, name: str) -> str | None:
    """One of Redis's settings, or None when the server will not say (CONFIG refused)."""
    try:
        answer = client.config_get(name)
    except redis.ResponseError:
        return None
    value = answer.get(name) if isinstance(answer, dict) else None
    if isinstance(value, bytes):
        value = value.decode()
    return value if isinstance(value, str) else None


def eviction_policy(client: redis.Redis) -> str | None:
    """Redis's maxmemory-policy, or None when the server will not say (CONFIG refused)."""
    return config_value(client, "maxmemory-policy")


def check_redis_keeps_jobs(client: redis.Redis) -> None:
    """ConfigError naming maxmemory-policy unless Redis never evicts, or naming appendonly
    when it keeps nothing on disk; a WARNING when the settings cannot be read or Redis
    cannot be reached yet. Behind Sentinel, each replica is held to the same."""
    try:
        problem = _refusal(client, "Redis")
    except (redis.ConnectionError, redis.TimeoutError):
        # A process may start before Redis does; it reconnects, and is not held back here.
        logger.warning("Redis is not reachable yet: its maxmemory-policy was not checked")
        return
    if problem is not None:
        raise ConfigError(problem)
    for address, replica in sentinel_replicas(client):
        with contextlib.closing(replica):
            _check_replica(address, replica)


def _refusal(client: redis.Redis, who: str) -> str | None:
    """Why `who` must not hold jobs (its eviction policy, or no persistence), or None."""
    policy = eviction_policy(client)
    if policy is None:
        logger.warning(
            "Could not read %s's maxmemory-policy and persistence (CONFIG GET refused): it "
            "must be %s, with appendonly yes, or it may evict job records under memory "
            "pressure and lose them on a restart",
            who,
            SAFE_POLICY,
        )
        return None
    if policy != SAFE_POLICY:
        return (
            f"{who}'s maxmemory-policy is {policy}, which may evict job records and lose "
            f"jobs; {FIX}"
        )
    return _persistence_refusal(client, who)


def _persistence_refusal(client: redis.Redis, who: str) -> str | None:
    """Why `who` keeps too little on disk for jobs, or None (a WARNING for RDB only)."""
    appendonly, save = config_value(client, "appendonly"), config_value(client, "save")
    if appendonly is None or save is None or appendonly == "yes":
        return None
    if not save.strip():
        return (
            f"{who} keeps nothing on disk (appendonly no and no save points): a restart of "
            f"Redis would lose every job in flight and every queued task; {PERSISTENCE_FIX}"
        )
    logger.warning(
        "%s keeps RDB snapshots only (appendonly no, save %s): a restart loses the job "
        "records and tasks written since the last snapshot; %s",
        who,
        save,
        PERSISTENCE_FIX,
    )
    return None


def sentinel_replicas(client: redis.Redis) -> list[tuple[str, redis.Redis]]:
    """Clients of the replicas Sentinel knows for `client`'s master, with the master's
    credentials and timeouts; none when `client` does not go through Sentinel."""
    pool = client.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return []
    keep = ("db", "username", "password", "socket_timeout", "socket_connect_timeout")
    options = {
        name: pool.connection_kwargs[name] for name in keep if name in pool.connection_kwargs
    }
    return [
        (f"{host}:{port}", redis.Redis(host=host, port=port, **options))
        for host, port in pool.sentinel_manager.discover_slaves(pool.service_name)
    ]


def _check_replica(address: str, replica: redis.Redis) -> None:
    """ConfigError when a replica that a failover may promote could evict job records or
    keeps nothing on disk; one that cannot be reached or read now is left to the check at
    the next start."""
    try:
        problem = _refusal(replica, f"Redis replica {address}")
    except (redis.ConnectionError, redis.TimeoutError):
        logger.warning(
            "Redis replica %s is not reachable: its maxmemory-policy was not checked", address
        )
        return
    if problem is not None:
        raise ConfigError(problem)
