-- Follow a replay job's events to their end (worker/ops/job_records.py, track).
-- KEYS: job record, its pending set (replayed events not yet finished), its again set (those
--       dead-lettered again).
-- ARGV: ledger key prefix, now ms, how many pending events to look at, least ms between looks
--       (0: look now), the job's TTL in seconds.
-- A replay cleared each event's ledger mark (`_outcome`) when it re-queued it, so a mark found
-- now is how the replayed event ended: it leaves the pending set and is counted once on the job
-- (`out_<outcome>`). A job in state `settling` (its batches done) whose pending set is empty
-- becomes `finished`. Returns 1 to the one caller that finished the job, else 0.
local job, pending, again = KEYS[1], KEYS[2], KEYS[3]
local ledger_prefix, now = ARGV[1], tonumber(ARGV[2])
local sample, least_gap, ttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local state = redis.call('HGET', job, 'state')
if not state then return 0 end
local last = tonumber(redis.call('HGET', job, 'tracked_ms') or '0')
if least_gap > 0 and now - last < least_gap then return 0 end
redis.call('HSET', job, 'tracked_ms', now)
local again_added = false
for _, id in ipairs(redis.call('SRANDMEMBER', pending, sample)) do
  local mark = redis.call('HGET', ledger_prefix .. id, '_outcome')
  if mark then
    local ok, decoded = pcall(cjson.decode, mark)
    local outcome = (ok and type(decoded) == 'table' and decoded['outcome']) or 'unknown'
    redis.call('SREM', pending, id)
    redis.call('HINCRBY', job, 'out_' .. outcome, 1)
    if outcome == 'dead_lettered' then
      redis.call('SADD', again, id)
      again_added = true
    end
  end
end
if again_added then redis.call('EXPIRE', again, ttl) end
local left = redis.call('SCARD', pending)
redis.call('HSET', job, 'pending', left)
if left == 0 and state == 'settling' then
  redis.call('HSET', job, 'state', 'finished', 'finished_ms', now, 'updated_ms', now)
  return 1
end
return 0
