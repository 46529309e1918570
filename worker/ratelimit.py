"""One request budget for Akool shared by every worker of the fleet, kept in Redis.

The budget is a GCRA (generic cell rate algorithm) limiter: Redis keeps one number per key,
the "theoretical arrival time" (TAT) of the next request. A request may go when the TAT is
no further in the future than the burst allows; taking a slot moves the TAT on by one
emission interval (1 / rate). Check and update happen in one Lua script, so the budget is
atomic across processes and hosts, and the script reads the clock with Redis `TIME`, so the
workers' clocks never matter.
"""

from __future__ import annotations

import logging
import math
import time

import redis

from worker import keys
from worker.errors import AkoolRateLimited, StoreUnavailable

logger = logging.getLogger(__name__)

DEFAULT_KEY = keys.AKOOL_BUDGET
# Burst 1 spaces requests at least 1 / rate apart: the fleet never sends two back to back,
# and no window of one second holds more than `rate` requests (rounded up).
DEFAULT_BURST = 1
RATE_LIMITED_MESSAGE = "the shared Akool request budget (AKOOL_MAX_RPS) is spent"
MICROSECONDS = 1_000_000

# KEYS[1]: the budget key. ARGV[1]: emission interval in µs. ARGV[2]: burst.
# Returns 0 when a slot was taken, else the µs until one is free (nothing is taken then).
# Times are integer µs since the epoch (< 2^53, exact in Lua's doubles); they are written
# with %.0f because Lua's default number format keeps only 14 digits.
_GCRA_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local allowed_at = tat + interval - burst * interval
if allowed_at > now then
  return allowed_at - now
end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat))
redis.call('PEXPIRE', KEYS[1], math.ceil((new_tat - now) / 1000) + 1)
return 0
"""


class RequestBudget:
    """A fleet-wide rate limit of `rate_per_second` requests, shared through Redis.

    Every instance using the same Redis and `key` draws from one budget, however many
    processes hold one. `burst` is how many requests may go back to back after a quiet
    spell (default 1: none). The key expires by itself once the budget is full again.
    """

    def __init__(
        self,
        client: redis.Redis,
        rate_per_second: float,
        *,
        burst: int = DEFAULT_BURST,
        key: str = DEFAULT_KEY,
    ) -> None:
        if not math.isfinite(rate_per_second) or rate_per_second <= 0:
            raise ValueError(f"rate_per_second must be a positive number, not {rate_per_second}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst}")
        self.rate_per_second = rate_per_second
        self.burst = burst
        self.key = key
        # At least 1 µs, so an absurdly high rate still moves the TAT forward.
        self._interval_us = max(1, round(MICROSECONDS / rate_per_second))
        self._script = client.register_script(_GCRA_SCRIPT)

    def __repr__(self) -> str:
        return f"RequestBudget({self.rate_per_second}/s, burst={self.burst}, key={self.key!r})"

    def reserve(self) -> float:
        """Take a slot if one is free now and return 0.0; otherwise take nothing and return
        the seconds until a slot frees up.

        Raises StoreUnavailable when Redis cannot be reached.
        """
        try:
            wait_us = self._script(keys=[self.key], args=[self._interval_us, self.burst])
        except (redis.ConnectionError, redis.TimeoutError) as e:
            raise StoreUnavailable(
                "the shared Akool request budget (Redis) could not be reached"
            ) from e
        return max(0.0, int(wait_us) / MICROSECONDS)

    def acquire(self, max_wait: float) -> None:
        """Take a slot, sleeping for one while the total wait stays within `max_wait` seconds.

        Raises AkoolRateLimited (with `retry_after`, the seconds until a slot is free) without
        taking a slot when the wait needed is longer than what remains of `max_wait`, and
        StoreUnavailable when Redis cannot be reached.
        """
        # The worker's monotonic clock only measures its own waiting; the budget itself is
        # timed by Redis.
        deadline = time.monotonic() + max(0.0, max_wait)
        while True:
            wait = self.reserve()
            if wait <= 0.0:
                return
            remaining = deadline - time.monotonic()
            if wait > remaining:
                logger.info("Akool request budget spent; a slot is free in %.3f s", wait)
                raise AkoolRateLimited(RATE_LIMITED_MESSAGE, retry_after=wait)
            # Another worker may take the slot first; then reserve() tells us the next wait.
            time.sleep(wait)
