"""One request budget for Akool shared by every worker of the fleet, kept in Redis.

The budget is a GCRA (generic cell rate algorithm) limiter: Redis keeps the "theoretical
arrival time" (TAT) of the next free slot. A request that finds the slot in the future
*reserves* it (the TAT moves on by one emission interval, 1 / rate) and is told how long to
wait for it, so slots are handed out first come, first served, never twice, and a waiting
job comes back at its own slot instead of asking again and again. The queue of reserved
slots is what paces polling under load: with N jobs asking and a rate of B, each waits about
N / B seconds for its turn.

The rate adapts (AIMD). A reserved slot is used when its turn comes, so a change of rate
shows only after the slots already handed out, one *round* (the queue's length in time)
later. Hence:
- Akool's "too frequent" (1005) or HTTP 429 to a slot reserved before the last cut tells of
  the old rate and is not counted. Refusals of slots at the rate now are counted and judged
  once a second (and 10 calls) of such slots were used: the rate is cut to what Akool
  served of them, and by at least 5 %, never below a floor. A new round starts.
- Each round without such an answer adds a fixed step (rounds counted from 1 s to 60 s),
  up to AKOOL_MAX_RPS, the ceiling.
Rate and TAT live in Redis and change in one Lua script per call, which reads the clock with
Redis `TIME`, so the workers' clocks never matter to the budget.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis

from worker.clock import Clock, wall_clock
from worker.errors import AkoolRateLimited, StoreUnavailable
from worker.store import keys

logger = logging.getLogger(__name__)

DEFAULT_KEY = keys.AKOOL_BUDGET
DEFAULT_RATE_KEY = keys.AKOOL_BUDGET_RATE
# Burst 1 spaces requests at least 1 / rate apart: the fleet never sends two back to back,
# and no window of one second holds more than `rate` requests (rounded up).
DEFAULT_BURST = 1
RATE_LIMITED_MESSAGE = "the shared Akool request budget (AKOOL_MAX_RPS) is spent"
MICROSECONDS = 1_000_000

# AIMD defaults (bench part `adaptive` measured them against an Akool allowing 20 calls a second).
# 0.2 req/s (one call every 5 s) still lets the fleet notice that Akool recovered.
RATE_FLOOR_RPS = 0.2
# A cut keeps at most 95 % of the rate: a lone refusal in a quiet round costs 5 %, a round
# mostly refused lands on what Akool served in it.
MAX_KEPT_SHARE = 0.95
# Refusals are judged over at least this many calls (and a second): one refusal among three
# calls is chance, not Akool's limit.
MIN_ROUND_CALLS = 10
# The climb: +0.5 req/s a round. From 19 to 20 req/s in two rounds, so an overshoot past
# Akool's limit is one step (a few percent at tens of requests a second), caught in a round.
INCREASE_STEP_RPS = 0.5
# A round is the queue of reserved slots, counted from 1 s (Akool's window) to 60 s: with a
# queue of half an hour (10,000 jobs at 5 req/s) the rate still climbs a step a minute.
MIN_ROUND_SECONDS = 1.0
MAX_ROUND_SECONDS = 60.0
# How far ahead a slot may be reserved. The task waits for it as a Celery countdown, held
# unacknowledged by a worker, so it must stay well inside the broker's visibility timeout
# (worker/celery_app.py: 2 h): half of it. Beyond that a job waits until its turn is within
# the horizon and asks again (one extra task per poll, from about 18,000 jobs at 5 req/s).
HORIZON_SECONDS = 3600.0
# A task more than this late for its reserved slot (Akool counts calls per second) reserves
# a new one instead of spending the old one late, on top of the slots that follow it.
LATE_SLOT_SECONDS = 1.0
# The rate's hash outlives its last change by this long (no call for a day: start afresh at
# the ceiling; the metrics gauge shows the rate meanwhile).
RATE_KEY_TTL_MS = 24 * 3600 * 1000

# KEYS[1]: the TAT (µs). KEYS[2]: the rate hash {rps, grown_us, cut_until_us, refused,
# reserved (slots handed out), reserved_at_cut}. ARGV: ceiling, floor, step (req/s),
# shortest and longest round (µs), burst, horizon (µs), the hash's TTL (ms), not_before (µs).
# Returns {1, wait µs} when a slot was reserved; {0, wait µs} when none was: the slot is
# nearer than not_before (ask again then) or beyond the horizon (ask again when it is not).
# Times are integer µs since the epoch (< 2^53, exact in Lua's doubles); they are written
# with %.0f because Lua's default number format keeps only 14 digits.
_RESERVE_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local ceiling, floor, step = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local round_min, round_max = tonumber(ARGV[4]), tonumber(ARGV[5])
local burst, horizon, not_before = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[9])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local state = redis.call('HMGET', KEYS[2], 'rps', 'grown_us')
local rate, grown = tonumber(state[1]), tonumber(state[2]) or now
local stored = rate
if rate == nil or rate > ceiling then rate = ceiling end
if rate < floor then rate = floor end
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
if rate < ceiling and now > grown then
  local round = math.min(math.max(tat - now, round_min), round_max)
  local steps = math.floor((now - grown) / round)
  if steps > 0 then
    rate = math.min(ceiling, rate + steps * step)
    grown = grown + steps * round
    stored = nil
  end
end
if rate ~= stored then
  redis.call('HSET', KEYS[2], 'rps', tostring(rate), 'grown_us', string.format('%.0f', grown))
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[8]))
end
local interval = math.max(1, math.floor(1000000 / rate + 0.5))
local slot = tat - (burst - 1) * interval
if slot < now then slot = now end
local wait = slot - now
if wait > horizon then return {0, math.max(not_before, wait - horizon)} end
if wait < not_before then return {0, not_before} end
local new_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat))
redis.call('PEXPIRE', KEYS[1], math.ceil((new_tat - now) / 1000) + 1)
if redis.call('HINCRBY', KEYS[2], 'reserved', 1) == 1 then
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[8]))
end
return {1, wait}
"""

# KEYS as above. ARGV: ceiling, floor, kept share, shortest and longest round (µs),
# Retry-After µs (0: none), the hash's TTL (ms), the horizon (µs), the fewest calls a round
# is judged by. An answer to a slot reserved before the last cut (before `cut_until`) is not
# counted: it tells of the old rate. Refusals of slots at the rate now are counted; once at
# least a second (and that many calls) of such slots were used, the rate is cut to what
# Akool served of them, and by at least the kept share, and a new round starts (until the
# slots reserved so far are used). Pushes the TAT past Retry-After. Returns 1 when cut.
_CUT_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local ceiling, floor, kept = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local round_min, round_max = tonumber(ARGV[4]), tonumber(ARGV[5])
local retry_after, ttl = tonumber(ARGV[6]), tonumber(ARGV[7])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local state = redis.call('HMGET', KEYS[2], 'rps', 'cut_until_us', 'refused', 'reserved',
  'reserved_at_cut')
local rate = math.min(tonumber(state[1]) or ceiling, ceiling)
local cut_until = tonumber(state[2]) or 0
local tat = tonumber(redis.call('GET', KEYS[1])) or now
local cut = 0
if now >= cut_until then
  local refused = (tonumber(state[3]) or 0) + 1
  local judged_after = math.max(round_min, tonumber(ARGV[9]) * 1000000 / rate)
  local since = math.max(cut_until, now - math.max(round_max, judged_after))
  if now - since >= judged_after then
    -- Slots used since: at most the rate's worth, and no more than were reserved since the
    -- cut (all at the rate now) when the fleet asks for less than the rate.
    local sent = rate * (now - since) / 1000000
    local reserved = tonumber(state[4]) or 0
    if state[5] then sent = math.min(sent, reserved - tonumber(state[5])) end
    local served = math.max(0, sent - refused) * 1000000 / (now - since)
    local new_rate = math.max(floor, math.min(rate * kept, served))
    local until_us = string.format('%.0f',
      math.min(math.max(tat, now + round_min), now + tonumber(ARGV[8])))
    redis.call('HSET', KEYS[2], 'rps', tostring(new_rate), 'grown_us', until_us,
      'cut_until_us', until_us, 'refused', '0', 'reserved_at_cut', tostring(reserved))
    cut = 1
  else
    redis.call('HSET', KEYS[2], 'refused', tostring(refused))
  end
  redis.call('PEXPIRE', KEYS[2], ttl)
end
if retry_after > 0 and tat < now + retry_after then
  tat = now + retry_after
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil(retry_after / 1000) + 1)
end
return cut
"""


@dataclass(frozen=True)
class AimdRule:
    """How the fleet's rate adapts: `cut` on a 1005 or 429, `raised` after success.

    The Lua scripts apply the same rule in Redis; this is its plain statement, for tests,
    sizing and the bench.
    """

    ceiling: float
    floor: float = RATE_FLOOR_RPS
    kept: float = MAX_KEPT_SHARE
    step: float = INCREASE_STEP_RPS
    round_min: float = MIN_ROUND_SECONDS
    round_max: float = MAX_ROUND_SECONDS

    def __post_init__(self) -> None:
        if not math.isfinite(self.ceiling) or self.ceiling <= 0:
            raise ValueError(f"the rate ceiling must be a positive number, not {self.ceiling}")
        if not 0 < self.kept < 1 or self.step <= 0 or not 0 < self.round_min <= self.round_max:
            raise ValueError("kept must be in (0, 1), step positive, 0 < round_min <= round_max")

    @property
    def lowest(self) -> float:
        """The floor, or the ceiling when that is lower still."""
        return min(self.floor, self.ceiling)

    def cut(self, rate: float, served: float | None = None) -> float:
        """The rate after Akool said "too frequent" at `rate`, having served `served` calls
        a second of the slots at that rate (None: unknown; only the 5 % cut)."""
        rate = min(rate, self.ceiling)
        kept = rate * self.kept if served is None else min(rate * self.kept, served)
        return max(self.lowest, kept)

    def round_seconds(self, queue_seconds: float) -> float:
        """A round: the queue of reserved slots, within [round_min, round_max]."""
        return min(max(queue_seconds, self.round_min), self.round_max)

    def raised(self, rate: float, seconds_of_success: float, queue_seconds: float = 0) -> float:
        """The rate after `seconds_of_success` without a 1005 or 429, the queue of reserved
        slots being `queue_seconds` long (whole rounds only)."""
        rounds = math.floor(max(0.0, seconds_of_success) / self.round_seconds(queue_seconds))
        return min(self.ceiling, max(self.lowest, rate) + rounds * self.step)


def wait_for_reserved(reserved_at: float | None, now: float, max_wait: float) -> float | None:
    """Seconds to wait before sending on a slot reserved for `reserved_at` (epoch seconds
    of the worker that reserved it, the same clock Celery's countdown ran on): 0 at it or
    up to LATE_SLOT_SECONDS after it, the rest when at most `max_wait` early; None (reserve
    anew) otherwise. A slot long past is not spent: tasks delayed together (a busy or
    restarted worker) would otherwise all go at once, in a burst Akool refuses."""
    if reserved_at is None:
        return None
    early = reserved_at - now
    if -LATE_SLOT_SECONDS <= early <= 0.0:
        return 0.0
    return early if 0.0 < early <= max_wait else None


# The slot a task came back for (worker/tasks.py sets it while the step runs), and the queue
# the context's last fresh reservation met: context variables, so each thread or task sees
# only its own.
_reserved_at: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "reserved_at", default=None
)
_queue_seen: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "queue_seen", default=None
)


@contextlib.contextmanager
def holding_slot(reserved_at: float | None) -> Iterator[None]:
    """While the block runs, the first request goes on the slot reserved for `reserved_at`
    (epoch seconds) without asking the budget again; it was counted when reserved."""
    tokens = (_reserved_at.set(reserved_at), _queue_seen.set(None))
    try:
        yield
    finally:
        _reserved_at.reset(tokens[0])
        _queue_seen.reset(tokens[1])


@dataclass(frozen=True)
class Reservation:
    """A budget's answer: `held` with `wait` seconds to the reserved slot (0: go now), or not
    held and `wait` until asking again is worth it (the backoff asked for, or the queue
    being beyond the horizon)."""

    held: bool
    wait: float

    def reserved_at(self, now: float) -> float | None:
        """The slot's time on this worker's clock (epoch seconds); None when not held."""
        return (now + self.wait) if self.held else None


class SlotReserved(AkoolRateLimited):
    """The request was not sent yet; a slot of the budget is reserved for it at
    `reserved_at` (epoch seconds, this worker's clock), `retry_after` seconds from now."""

    def __init__(self, message: str, *, retry_after: float, reserved_at: float) -> None:
        super().__init__(message, retry_after=retry_after)
        self.reserved_at = reserved_at


class RequestBudget:
    """A fleet-wide, adaptive rate limit of at most `rate_per_second` requests (the ceiling),
    shared through Redis.

    Every instance using the same Redis and keys draws from one budget, however many
    processes hold one. `burst` is how many requests may go back to back after a quiet
    spell (default 1: none). The TAT key expires by itself once the budget is full again.
    """

    def __init__(
        self,
        client: redis.Redis,
        rate_per_second: float,
        *,
        burst: int = DEFAULT_BURST,
        key: str = DEFAULT_KEY,
        rate_key: str | None = None,
        horizon: float = HORIZON_SECONDS,
        rule: AimdRule | None = None,
        clock: Clock = wall_clock,
    ) -> None:
        if not math.isfinite(rate_per_second) or rate_per_second <= 0:
            raise ValueError(f"rate_per_second must be a positive number, not {rate_per_second}")
        if burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst}")
        if not horizon > 0:
            raise ValueError(f"horizon must be positive, not {horizon}")
        self.rate_per_second = rate_per_second
        self.burst = burst
        self.key = key
        # A budget on a key of its own (tests) adapts on a rate key of its own too.
        self.rate_key = rate_key or (DEFAULT_RATE_KEY if key == DEFAULT_KEY else key + ":rate")
        self.horizon = horizon
        self.rule = rule or AimdRule(ceiling=rate_per_second)
        # Reserved slots are passed between tasks as epoch seconds of the worker's clock.
        self._clock = clock
        self._reserve = client.register_script(_RESERVE_SCRIPT)
        self._cut = client.register_script(_CUT_SCRIPT)

    def __repr__(self) -> str:
        return f"RequestBudget({self.rate_per_second}/s, burst={self.burst}, key={self.key!r})"

    def reserve(self, not_before: float = 0.0) -> Reservation:
        """Reserve the next free slot (now, or up to the horizon ahead); with `not_before`,
        only a slot at least that many seconds away (a poll's next turn, asked for as soon
        as the backoff is known: under load the queue is longer than the backoff).

        Raises StoreUnavailable when Redis cannot be reached.
        """
        rule = self.rule
        rounds = [_us(rule.round_min), _us(rule.round_max)]
        args = [rule.ceiling, rule.lowest, rule.step, *rounds, self.burst, _us(self.horizon)]
        answer = self._run(self._reserve, [*args, RATE_KEY_TTL_MS, _us(max(0.0, not_before))])
        held, wait_us = answer
        return Reservation(held=bool(held), wait=max(0.0, int(wait_us) / MICROSECONDS))

    def slow_down(self, retry_after: float | None = None) -> bool:
        """Akool said "too frequent" (1005, 429): count it, cut the fleet's rate when this
        round has not been cut yet, and send nothing before `retry_after` seconds. True when
        cut."""
        rule = self.rule
        rounds = [_us(rule.round_min), _us(rule.round_max)]
        args = [rule.ceiling, rule.lowest, rule.kept, *rounds, _us(retry_after or 0.0)]
        extra = [RATE_KEY_TTL_MS, _us(self.horizon), MIN_ROUND_CALLS]
        cut = bool(self._run(self._cut, [*args, *extra]))
        if cut:
            logger.warning("Akool asks for fewer requests: the fleet's request rate is cut")
        return cut

    def current_rate(self, client: redis.Redis) -> float:
        """The fleet's rate now as stored (the ceiling before any cut); for tests and tools.
        An increase due since the last call shows at the next reservation."""
        stored = client.hget(self.rate_key, "rps")
        return min(self.rule.ceiling, float(stored)) if stored else self.rule.ceiling

    def take(self, max_wait: float) -> None:
        """Before a request: go on the slot this task came back for (`holding_slot`; the
        rest waited out when slightly early), else `acquire` one."""
        wait = wait_for_reserved(_reserved_at.get(), self._clock(), max_wait)
        if wait is None:
            _queue_seen.set(self.acquire(max_wait))
            return
        _reserved_at.set(None)  # one request per slot: a second one reserves its own
        if wait > 0.0:
            time.sleep(wait)

    def book_next(self, not_before: float) -> tuple[float, float | None]:
        """Book the slot of a later request (the next poll) `not_before` seconds away or
        more: (seconds to wait, the slot's epoch time), or (not_before, None) when the queue
        is shorter than that; then the request reserves when it comes. A request that just
        met a shorter queue needs no round trip to know."""
        seen = _queue_seen.get()
        if seen is not None and seen < not_before:
            return not_before, None
        booking = self.reserve(not_before=not_before)
        return booking.wait, booking.reserved_at(self._clock())

    def acquire(self, max_wait: float) -> float:
        """Reserve a slot and wait for it when it is at most `max_wait` seconds away; the
        seconds waited (the queue met).

        Otherwise raises SlotReserved (the slot stays reserved: come back at `reserved_at`),
        or AkoolRateLimited with nothing reserved when the queue is longer than the horizon;
        StoreUnavailable when Redis cannot be reached.
        """
        reservation = self.reserve()
        if reservation.held and reservation.wait <= max(0.0, max_wait):
            if reservation.wait > 0.0:
                time.sleep(reservation.wait)
            return reservation.wait
        logger.debug("Akool request budget spent; the next slot is in %.3f s", reservation.wait)
        reserved_at = reservation.reserved_at(self._clock())
        if reserved_at is not None:
            raise SlotReserved(
                RATE_LIMITED_MESSAGE, retry_after=reservation.wait, reserved_at=reserved_at
            )
        raise AkoolRateLimited(RATE_LIMITED_MESSAGE, retry_after=reservation.wait)

    def _run(self, script: Any, args: list[float | int]) -> Any:
        try:
            return script(keys=[self.key, self.rate_key], args=args)
        except (redis.ConnectionError, redis.TimeoutError) as e:
            raise StoreUnavailable(
                "the shared Akool request budget (Redis) could not be reached"
            ) from e


def _us(seconds: float) -> int:
    return round(seconds * MICROSECONDS)
