"""Checks a process makes before it serves: is this Redis safe to keep jobs in?

Job records carry a TTL (JOB_RETENTION_DAYS) and queue messages do not, so a Redis whose
`maxmemory-policy` evicts keys with a TTL (`volatile-*`) deletes exactly the job records
under memory pressure, and an `allkeys-*` policy may delete anything. Only `noeviction`
keeps them: Redis then refuses writes when full, which fails loudly instead of losing jobs.
Worker, beat and the web process refuse to start on any other policy. A managed Redis may
refuse `CONFIG GET`; then a WARNING says what must be true, and the process goes on.

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


def eviction_policy(client: redis.Redis) -> str | None:
    """Redis's maxmemory-policy, or None when the server will not say (CONFIG refused)."""
    try:
        answer = client.config_get("maxmemory-policy")
    except redis.ResponseError:
        return None
    value = answer.get("maxmemory-policy") if isinstance(answer, dict) else None
    if isinstance(value, bytes):
        value = value.decode()
    return value if isinstance(value, str) else None


def check_redis_keeps_jobs(client: redis.Redis) -> None:
    """ConfigError naming maxmemory-policy unless Redis never evicts; a WARNING when the
    policy cannot be read or Redis cannot be reached yet."""
    try:
        policy = eviction_policy(client)
    except (redis.ConnectionError, redis.TimeoutError):
        # A process may start before Redis does; it reconnects, and is not held back here.
        logger.warning("Redis is not reachable yet: its maxmemory-policy was not checked")
        return
    if policy is None:
        logger.warning(
            "Could not read Redis's maxmemory-policy (CONFIG GET refused): it must be %s, "
            "or Redis may evict job records under memory pressure",
            SAFE_POLICY,
        )
        return
    if policy != SAFE_POLICY:
        raise ConfigError(
            f"Redis's maxmemory-policy is {policy}, which may evict job records and lose "
            f"jobs; {FIX}"
        )
    for address, replica in sentinel_replicas(client):
        with contextlib.closing(replica):
            _check_replica(address, replica)


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
    """ConfigError when a replica that a failover may promote could evict job records; one
    that cannot be reached or read now is left to the check at the next start."""
    try:
        policy = eviction_policy(replica)
    except (redis.ConnectionError, redis.TimeoutError):
        logger.warning(
            "Redis replica %s is not reachable: its maxmemory-policy was not checked", address
        )
        return
    if policy is not None and policy != SAFE_POLICY:
        raise ConfigError(
            f"Redis replica {address}'s maxmemory-policy is {policy}: once Sentinel promotes "
            f"it, it may evict job records and lose jobs; {FIX}"
        )
