"""Counting the jobs a Redis already holds, once: for a Redis whose jobs were written before
the scripts kept their counts (by status, then by kind and status), so that an upgrade with
jobs in flight does not count their next moves from zero, below zero.
"""

from __future__ import annotations

from worker.store.scripts import lua

# Counts the jobs by status and by kind and status (and fills the unarchived set) once per
# count: each hash has its `counted_since` field once counted, and a call with both counted
# returns 0 at once; one missing either is counted again whole, which overwrites whatever
# moves were counted before, since it reads every record at one instant. KEYS: counts by
# status, jobs index, unarchived set, counts by kind. ARGV: the job key prefix, now, then
# every status. The records' keys are built here, so it suits one Redis (not a cluster).
# O(jobs), once; 1 when it counted.
COUNT_JOBS = lua("""
$helpers
if redis.call('HEXISTS', KEYS[1], 'counted_since') == 1
  and redis.call('HEXISTS', KEYS[4], 'counted_since') == 1 then return 0 end
local counts, by_kind = {}, {}
for i = 3, #ARGV do counts[ARGV[i]] = 0 end
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  -- pcall: a key of another type answers an error, and such a record is not counted.
  local f = redis.pcall('HMGET', ARGV[1] .. id, 'status', 'completed_ts', 'result_url', 'kind')
  if type(f) == 'table' and not f.err and f[1] and counts[f[1]] then
    counts[f[1]] = counts[f[1]] + 1
    local field = (f[4] or '$lipsync') .. ':' .. f[1]
    by_kind[field] = (by_kind[field] or 0) + 1
    local done = unarchived(f[1], f[2], f[3])
    if done then redis.call('ZADD', KEYS[3], done, id) end
  end
end
redis.call('DEL', KEYS[4])
for status, n in pairs(counts) do redis.call('HSET', KEYS[1], status, n) end
for field, n in pairs(by_kind) do redis.call('HSET', KEYS[4], field, n) end
redis.call('HSET', KEYS[1], 'counted_since', ARGV[2])
redis.call('HSET', KEYS[4], 'counted_since', ARGV[2])
return 1
""")
