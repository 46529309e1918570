"""The Lua scripts behind every write to a job record.

Each runs atomically in Redis, so a check and the write it guards cannot be split by another
worker. Every write is conditional on the record being whole (it has its `status`): a step
still running when its record expired or was deleted must not recreate a hash of one or two
fields without a TTL, which would read as nothing and never expire. Scripts return -1 for
such a record; the store turns that into a KeyError. Only `UPDATE_UNLESS_FINAL` and
`REOPEN_FAILED` refresh the record's TTL: a heartbeat or a poll count keeps what it has.

Beside the KEYS they are given, some scripts touch keys named after the job or its record:
its result in Celery's backend (the write that ends a job stores it), the caller's claims on
an idempotency key and an archive key (refreshed with the record, so they live as long as
it), and the holder of a claim when a new job asks for it. So they suit one Redis, or one
master behind Sentinel, not a cluster: the store has never spread its keys over slots.
"""

from __future__ import annotations

import string

from worker.names import LIPSYNC_KIND
from worker.status import WAIT_FAMILIES, JobStatus, Wait
from worker.store import keys

_FINAL = {
    "archived": JobStatus.ARCHIVED.value,
    "failed": JobStatus.FAILED.value,
    "cancelled": JobStatus.CANCELLED.value,
}
_PREFIXES = {
    "by_kind": keys.METRICS_JOBS_BY_KIND,
    "lipsync": LIPSYNC_KIND,
    "job_prefix": keys.JOB_PREFIX,
    "result_prefix": keys.CELERY_RESULT_PREFIX,
    "idempotency_prefix": keys.IDEMPOTENCY_PREFIX,
    "archive_key_prefix": keys.ARCHIVE_KEY_PREFIX,
}
# Among a moving script's KEYS, from WAIT_KEYS_FROM on: the sorted set of each family of
# waits (in WAIT_FAMILIES order), then their counts (worker/store/jobs.py passes them so).
WAIT_KEYS_FROM = 7
# Each kind of wait (worker/status.py `Wait`) as the number of its family's set, for Lua.
_WAIT_SETS = ", ".join(f"{kind.value} = {WAIT_FAMILIES.index(kind.family) + 1}" for kind in Wait)
_FAMILIES = ", ".join(f"'{family}'" for family in WAIT_FAMILIES)

# Lua helpers for the scripts that move a job (`$helpers` at a script's top). The per-status
# counts (worker/store/keys.py METRICS_JOBS_BY_STATUS) change only here and at create, so a scrape
# reads them instead of every record. A job is "unarchived" while Akool's video is done
# (completed_ts) and not in S3, unless it failed without a video to save: the expiry set's rule.
_HELPERS = string.Template("""
local FINAL = {['$archived'] = true, ['$failed'] = true, ['$cancelled'] = true}
local function count_move(counts, before, after, record)
  if before ~= after then
    redis.call('HINCRBY', counts, before, -1)
    redis.call('HINCRBY', counts, after, 1)
    local kind = redis.call('HGET', record, 'kind')
    if not kind or kind == '' then kind = '$lipsync' end
    redis.call('HINCRBY', '$by_kind', kind .. ':' .. before, -1)
    redis.call('HINCRBY', '$by_kind', kind .. ':' .. after, 1)
  end
end
-- When Akool finished the job's video, if that video is still to be archived; else nil.
local function unarchived(status, completed, result)
  local done = tonumber(completed)
  if status == '$archived' or status == '$cancelled' or not done then return nil end
  if status == '$failed' and (not result or result == '') then return nil end
  return done
end
local function track_unarchived(record, set, id)
  local f = redis.call('HMGET', record, 'status', 'completed_ts', 'result_url')
  local done = unarchived(f[1], f[2], f[3])
  if done then
    redis.call('ZADD', set, done, id)
  else
    redis.call('ZREM', set, id)
  end
end
-- Keeps the job in the waiting set of the family of what it waits on (scored by since when
-- it waits) and in no other, a final job in none, and the counts by family in step. The sets
-- are KEYS from $wait_keys_from on, their counts the KEYS after them.
local WAIT_SET = {$wait_sets}
local WAIT_FAMILY = {$families}
local function keep_waiting(record, id)
  local f = redis.call('HMGET', record, 'status', 'wait_on', 'wait_since_ts')
  local final = FINAL[f[1]]
  local want = nil
  if not final and tonumber(f[3]) then want = WAIT_SET[f[2]] end
  local counts = KEYS[$wait_keys_from + #WAIT_FAMILY]
  for i, family in ipairs(WAIT_FAMILY) do
    local set = KEYS[$wait_keys_from + i - 1]
    if i == want then
      if redis.call('ZADD', set, f[3], id) == 1 then redis.call('HINCRBY', counts, family, 1) end
    elseif redis.call('ZREM', set, id) == 1 then
      redis.call('HINCRBY', counts, family, -1)
    end
  end
end
-- An epoch time as ISO 8601 in UTC (Celery's date_done), by the civil-from-days rule.
local function iso_utc(epoch)
  local t = math.floor(tonumber(epoch))
  local days = math.floor(t / 86400)
  local secs = t - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d+00:00', y, m, d,
    math.floor(secs / 3600), math.floor(secs % 3600 / 60), secs % 60)
end
-- How the job ended, as Celery's result backend stores a task's result under the job id
-- (the id of its chain's last task), kept as long as the record and published, as the
-- backend does, to whoever waits on it: SUCCESS with the job's status and archive_uri, or
-- FAILURE with worker.errors.JobFailed or JobCancelled carrying its error.
local function store_result(record, id, ttl, now)
  local f = redis.call('HMGET', record, 'status', 'archive_uri', 'error')
  local meta = {task_id = id, traceback = cjson.null, date_done = iso_utc(now)}
  if f[1] == '$archived' then
    meta.status = 'SUCCESS'
    meta.result = {job_id = id, status = f[1], archive_uri = f[2] or cjson.null}
  else
    local kind = 'JobFailed'
    if f[1] == '$cancelled' then kind = 'JobCancelled' end
    meta.status = 'FAILURE'
    meta.result = {exc_type = kind, exc_module = 'worker.errors', exc_message = {f[3] or f[1]}}
  end
  local key = '$result_prefix' .. id
  local text = cjson.encode(meta)
  redis.call('SET', key, text, 'EX', ttl)
  redis.call('PUBLISH', key, text)
end
-- The caller's claims on an idempotency key and an archive key live as long as the record.
local function refresh_claims(record, ttl)
  local f = redis.call('HMGET', record, 'idempotency_key', 'archive_key')
  if f[1] and f[1] ~= '' then redis.call('EXPIRE', '$idempotency_prefix' .. f[1], ttl) end
  if f[2] and f[2] ~= '' then redis.call('EXPIRE', '$archive_key_prefix' .. f[2], ttl) end
end
""").substitute(
    _FINAL, **_PREFIXES, wait_sets=_WAIT_SETS, families=_FAMILIES, wait_keys_from=WAIT_KEYS_FROM
)


def lua(script: str) -> str:
    """A script with the whole-record check, the final statuses and the helpers filled in."""
    return string.Template(script).substitute(
        whole="redis.call('HEXISTS', KEYS[1], 'status') == 1",
        helpers=_HELPERS,
        wait_keys_from=WAIT_KEYS_FROM,
        **_FINAL,
        **_PREFIXES,
    )


# Sets fields unless the job is in a final state, and keeps the due, expiry and outbox sets,
# the counts by status, the unarchived set and the waiting sets in step. KEYS: job hash, due
# set, expiry set, outbox, counts by status, unarchived set, then the waiting sets and their
# counts (see WAIT_KEYS_FROM). ARGV: ttl seconds, job id, due time
# ('' = unchanged), now, then field/value pairs. Returns 1 when written, 0 when the job is
# final (so a duplicated final write counts nothing twice), -1 when the record is not whole.
# The write that makes a job final with someone to tell also puts it in the outbox, in the
# same step: a worker that dies right after cannot lose the notification.
_UPDATE_BODY = """
local status = redis.call('HGET', KEYS[1], 'status')
if FINAL[status] then return 0 end
--on-write--
local before = status
local waits = false
for i = --first--, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  if ARGV[i] == 'wait_on' then waits = true end
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
refresh_claims(KEYS[1], tonumber(ARGV[1]))
status = redis.call('HGET', KEYS[1], 'status')
count_move(KEYS[5], before, status, KEYS[1])
track_unarchived(KEYS[1], KEYS[6], ARGV[2])
local ended = FINAL[status]
if waits or ended then keep_waiting(KEYS[1], ARGV[2]) end
local expires = redis.call('HGET', KEYS[1], 'expires_ts')
local result = redis.call('HGET', KEYS[1], 'result_url')
if ended then
  redis.call('ZREM', KEYS[2], ARGV[2])
  -- A failed job whose video exists at Akool is still worth saving: keep watching it.
  if status ~= '$failed' or not result or result == '' then
    redis.call('ZREM', KEYS[3], ARGV[2])
  end
  local url = redis.call('HGET', KEYS[1], 'notify_url')
  local sig = redis.call('HGET', KEYS[1], 'on_complete')
  if (url and url ~= '') or (sig and sig ~= '') then
    redis.call('ZADD', KEYS[4], 'NX', ARGV[4], ARGV[2])
  end
  store_result(KEYS[1], ARGV[2], ARGV[1], ARGV[4])
  return 1
end
if ARGV[3] ~= '' then redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2]) end
if expires and expires ~= '' then redis.call('ZADD', KEYS[3], expires, ARGV[2]) end
return 1
"""


def _update(first: int = 5, on_write: str = "") -> str:
    """The update's body, its field pairs from ARGV[first], running `on_write` first."""
    return _UPDATE_BODY.replace("--first--", str(first)).replace("--on-write--", on_write)


UPDATE_UNLESS_FINAL = lua("$helpers\nif not ($whole) then return -1 end" + _update())
# The same write, also refused (0) once the job has an Akool id: a job whose submit's answer
# was lost is adopted by a callback, failed at the end of its wait, or marked as waiting by
# whichever comes first, never by one after the other has named or ended it.
UPDATE_WITHOUT_AKOOL_ID = lua(
    """
$helpers
if not ($whole) then return -1 end
local known = redis.call('HGET', KEYS[1], 'akool_id')
if known and known ~= '' then return 0 end"""
    + _update()
)

# A sign of life from a running step. KEYS: job hash, due set. ARGV: job id, due, now,
# progress bytes ('' = none), total bytes ('' = none), '1' when an archive attempt starts
# (counted, so the next attempt knows to clear what a killed one left in S3). Never re-adds a
# job to the due set. Returns 0, writing nothing, for a job that ended (a cancelled one: the
# running archive stops).
HEARTBEAT = lua("""
$helpers
if not ($whole) then return -1 end
if FINAL[redis.call('HGET', KEYS[1], 'status')] then return 0 end
redis.call('HSET', KEYS[1], 'updated_ts', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'archive_progress_bytes', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'archive_total_bytes', ARGV[5]) end
if ARGV[6] == '1' then redis.call('HINCRBY', KEYS[1], 'archive_attempts', 1) end
redis.call('ZADD', KEYS[2], 'XX', ARGV[2], ARGV[1])
return 1
""")

# Takes the poll loop for a task id: the first loop to run (or the one the sweeper names)
# owns the job; a duplicated loop finds another owner and stops. KEYS[1] job hash,
# ARGV[1] task id. Returns the record (HGETALL) when this task owns the polling, so the
# poll reads it in the same round trip, 0 when another task does, or -1.
OWN_POLL = lua("""
if not ($whole) then return -1 end
local owner = redis.call('HGET', KEYS[1], 'poll_owner')
if not owner or owner == '' then
  redis.call('HSET', KEYS[1], 'poll_owner', ARGV[1])
elseif owner ~= ARGV[1] then
  return 0
end
return redis.call('HGETALL', KEYS[1])
""")

# Records one poll in one round trip: counts it, logs its time and Akool's status in
# `poll_log` (records.POLL_LOG_ENTRIES kept; a poll that got no status is logged with the
# one Akool gave last), and writes what changed with the next due time, as
# UPDATE_UNLESS_FINAL does. KEYS: as UPDATE_UNLESS_FINAL. ARGV: ttl seconds, job id, due
# ('' = unchanged), now, entries kept, Akool's status ('' = none), then field/value pairs.
# Returns 1, 0 when the job is final (nothing counted), or -1.
_LOG_POLL = """
local f = redis.call('HMGET', KEYS[1], 'poll_log', 'created_ts')
local log = f[1] or ''
local said = ARGV[6]
if said == '' then said = string.match(log, ':([^,]*)$$') or '' end
local offset = math.max(0, math.floor(tonumber(ARGV[4]) - (tonumber(f[2]) or 0)))
local entry = string.format('%d:%s', offset, said)
if log == '' then log = entry else log = log .. ',' .. entry end
local _, commas = string.gsub(log, ',', ',')
for _ = tonumber(ARGV[5]), commas do log = string.sub(log, string.find(log, ',', 1, true) + 1) end
redis.call('HSET', KEYS[1], 'poll_log', log)
redis.call('HINCRBY', KEYS[1], 'polls', 1)"""
RECORD_POLL = lua("$helpers\nif not ($whole) then return -1 end" + _update(7, _LOG_POLL))

# Takes the job's one submit claim for one step run. KEYS: job hash. ARGV: now, the run's
# token. 1 taken, 0 when any run holds it (this one too) or the job ended (a cancel that came
# after the step read the record), -1 when the record is not whole.
CLAIM_SUBMIT = lua("""
$helpers
if not ($whole) then return -1 end
if FINAL[redis.call('HGET', KEYS[1], 'status')] then return 0 end
if redis.call('HEXISTS', KEYS[1], 'submit_claimed_ts') == 1 then return 0 end
redis.call('HSET', KEYS[1], 'submit_claimed_ts', ARGV[1], 'submit_claim', ARGV[2])
return 1
""")

# Gives the submit claim back, only to the run that took it (its token): a run that never
# took it, or whose claim another run took since, changes nothing. KEYS: job hash. ARGV:
# the token. 1 given back, 0 not this run's.
RELEASE_SUBMIT = """
if redis.call('HGET', KEYS[1], 'submit_claim') ~= ARGV[1] then return 0 end
redis.call('HDEL', KEYS[1], 'submit_claimed_ts', 'submit_claim')
return 1
"""

# Forgets a job whose record is gone (expired, or unreadable): out of the due set and of
# any waiting set, its family's count taken down. KEYS: the job hash (not read), then as
# UPDATE_UNLESS_FINAL. ARGV: job id.
FORGET = lua("""
$helpers
redis.call('ZREM', KEYS[2], ARGV[1])
for i, family in ipairs(WAIT_FAMILY) do
  if redis.call('ZREM', KEYS[$wait_keys_from + i - 1], ARGV[1]) == 1 then
    redis.call('HINCRBY', KEYS[$wait_keys_from + #WAIT_FAMILY], family, -1)
  end
end
return 1
""")

# Sets bookkeeping fields on a whole record, final or not, without touching its TTL (the
# notification's progress is written after the job ended). KEYS: job hash. ARGV: pairs.
SET_IF_WHOLE = lua("""
if not ($whole) then return -1 end
for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
""")

# Re-opens a failed job for an operator's retry: the one write that may change a final job.
# Its notification is forgotten with its failure, so the next ending is announced anew, and
# so is its last wait. With a fresh URL asked for, the result URL is forgotten too (polling
# asks Akool again) with the archive's one-time start. KEYS: as UPDATE_UNLESS_FINAL, then
# the archive's start marker. ARGV: job id, status, due, now, new poll deadline ('' keeps
# it), '1' to ask for a fresh URL. Returns 1 when re-opened, 0 when the job is not failed
# (any more).
REOPEN_FAILED = lua("""
$helpers
if redis.call('HGET', KEYS[1], 'status') ~= '$failed' then return 0 end
redis.call('HSET', KEYS[1], 'status', ARGV[2], 'error', '', 'updated_ts', ARGV[4],
           'redrives', '0')
if ARGV[6] == '1' then
  redis.call('HDEL', KEYS[1], 'result_url')
  redis.call('DEL', KEYS[#KEYS])
end
count_move(KEYS[5], '$failed', ARGV[2], KEYS[1])
track_unarchived(KEYS[1], KEYS[6], ARGV[1])
redis.call('DEL', '$result_prefix' .. ARGV[1])
redis.call('HDEL', KEYS[1], 'notified_ts', 'notify_error', 'on_complete_sent_ts',
           'notify_owner', 'wait_on', 'wait_since_ts', 'wait_tries', 'wait_detail')
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'poll_deadline_ts', ARGV[5]) end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
local expires = redis.call('HGET', KEYS[1], 'expires_ts')
if expires and expires ~= '' then redis.call('ZADD', KEYS[3], expires, ARGV[1]) end
return 1
""")

# Takes the job's pending notification for one delivery task. KEYS: job hash, outbox.
# ARGV: job id, task id, now, lease end. An entry due now, or held by this same task (its
# own retry), is taken and held until the lease ends; one held by another live task is not.
# Returns 1 when taken, 0 when nothing is pending for this task, -1 (and the entry dropped)
# when the record is not whole.
CLAIM_NOTICE = lua("""
if not ($whole) then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return -1
end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score then return 0 end
local owner = redis.call('HGET', KEYS[1], 'notify_owner')
if tonumber(score) > tonumber(ARGV[3]) and owner and owner ~= '' and owner ~= ARGV[2] then
  return 0
end
redis.call('HSET', KEYS[1], 'notify_owner', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return 1
""")

# Ends the job's pending notification (delivered, or given up). KEYS: job hash, outbox.
# ARGV: job id, then field/value pairs to record on the job.
FINISH_NOTICE = lua("""
redis.call('ZREM', KEYS[2], ARGV[1])
if not ($whole) then return -1 end
for i = 2, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('HDEL', KEYS[1], 'notify_owner')
return 1
""")

# Stores a new job, unless a claim it makes is held. KEYS: job hash, jobs index, due set,
# counts by status, then one key per claim the request makes (an idempotency key, an archive
# key, an adopted Akool id), whose kinds ARGV names. ARGV: ttl seconds, job id, now, due,
# request digest, number of claims n, the n kinds ('idempotency', 'archive_key', 'akool'),
# then field/value pairs. A claim is held when it names another job whose record exists:
# - an idempotency key: {'same', id} when that job was made by the same request (equal
#   digest), else {'conflict', id};
# - an archive key: {'taken', id};
# - an Akool id: {'same', id} unless that job failed or was cancelled (then it is adopted
#   anew).
# Otherwise the job is written, counted, indexed, due, and given every claim: {'new', id}.
CREATE_JOB = lua("""
$helpers
local n = tonumber(ARGV[6])
for i = 1, n do
  local kind = ARGV[6 + i]
  local holder = redis.call('GET', KEYS[4 + i])
  local record = holder and ('$job_prefix' .. holder)
  if holder and holder ~= ARGV[2] and redis.call('HEXISTS', record, 'status') == 1 then
    if kind == 'idempotency' then
      if redis.call('HGET', record, 'request_digest') == ARGV[5] then return {'same', holder} end
      return {'conflict', holder}
    elseif kind == 'archive_key' then
      return {'taken', holder}
    else
      local status = redis.call('HGET', record, 'status')
      if status ~= '$failed' and status ~= '$cancelled' then return {'same', holder} end
    end
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 7 + n))
local ttl = tonumber(ARGV[1])
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[2])
-- Counted by status from here on by the scripts that move it (a scrape reads counts).
local f = redis.call('HMGET', KEYS[1], 'status', 'kind')
redis.call('HINCRBY', KEYS[4], f[1], 1)
redis.call('HINCRBY', '$by_kind', (f[2] or '$lipsync') .. ':' .. f[1], 1)
-- The index forgets ids whose records have expired, so it cannot grow forever.
redis.call('ZREMRANGEBYSCORE', KEYS[2], 0, tonumber(ARGV[3]) - ttl)
for i = 1, n do redis.call('SET', KEYS[4 + i], ARGV[2], 'EX', ttl) end
return {'new', ARGV[2]}
""")
