-- Finish an attempt: record the last step's result (whatever the lease says: it did happen);
-- then, only while the lease is ours, write the client state, the event's outcome (ledger mark
-- and stream entry, and the client's timeline) and its dead letter if any, and release the lease.
-- The client's business keys (kept for its life) get the grant's entry: '<event> <amount>' once
-- done, '<event> <amount> held' while a dead letter holds it undecided, removed (if ours) when
-- it never took effect. A dead letter carries the ledger and what it holds (dead_letter_truth).
-- Returns 1, or 0 if the lease was lost (nothing but the step's result was written).
local lock_key = KEYS[1]
local ledger_key = KEYS[2]
local client_key = KEYS[3]
local deliveries_key = KEYS[4]
local outcomes_key = KEYS[5]
local dead_key = KEYS[6]
local dead_index_key = KEYS[7]
local dead_counts_key = KEYS[8]
local timeline_key = KEYS[9]  -- the client's outcomes, newest first
local business_keys = KEYS[10]  -- the client's business keys, for its life
local lease_token = ARGV[1]
local outcome_field = ARGV[2]
local outcome_mark = ARGV[3]  -- the ledger's mark of how the event ended
local state = ARGV[4]  -- the client's new state, or '' when unchanged
local ledger_ttl_s = ARGV[5]
local stream_maxlen = ARGV[6]
local event_key = ARGV[7]
local dead_letter = ARGV[8]  -- or ''
local now_ms = ARGV[9]
local dead_reason = ARGV[10]
local done_field = ARGV[11]  -- the last step's record, or ''
local done_record = ARGV[12]
local grant_step = ARGV[13]  -- the plan's grant step, or ''
local business_field = ARGV[14]  -- its business key (e.g. 'invoice:INV-1')
local amount = ARGV[15]
local timeline_item = ARGV[16]  -- the outcome record as JSON
local timeline_maxlen = tonumber(ARGV[17])
local first_stream_arg = 18  -- then the outcome as stream field/value pairs

if done_field ~= '' then redis.call('HSET', ledger_key, done_field, done_record) end
if redis.call('GET', lock_key) ~= lease_token then return 0 end
if state ~= '' then redis.call('SET', client_key, state) end
local holds = {}
if grant_step ~= '' then
  local record = redis.call('HGET', ledger_key, grant_step)
  record = record and cjson.decode(record)
  local result = record and record['result']
  local duplicate = type(result) == 'table' and result['duplicate_of']
  local kept = redis.call('HGET', business_keys, business_field)
  local ours = not kept or string.sub(kept, 1, #event_key + 1) == event_key .. ' '
  local entry = nil  -- left as it is for a duplicate (another's grant, or ours recognised)
  if record and record['state'] == 'done' and not duplicate then
    entry = event_key .. ' ' .. amount
  elseif record and record['state'] ~= 'done' and dead_letter ~= '' then
    entry = event_key .. ' ' .. amount .. ' held'
  elseif not record and kept and ours then
    redis.call('HDEL', business_keys, business_field)
  end
  if entry and ours then
    redis.call('HSET', business_keys, business_field, entry)
    holds[business_field] = entry
  elseif duplicate == event_key and kept then
    holds[business_field] = kept
  end
end
if dead_letter ~= '' then
  dead_letter = with_truth(dead_letter, ledger_key, outcome_field, holds)
end
redis.call('HSET', ledger_key, outcome_field, outcome_mark)
redis.call('EXPIRE', ledger_key, ledger_ttl_s)
redis.call('DEL', deliveries_key)
if dead_letter ~= '' then
  if redis.call('HSET', dead_key, event_key, dead_letter) == 1 then
    redis.call('HINCRBY', dead_counts_key, dead_reason, 1)
  end
  redis.call('ZADD', dead_index_key, now_ms, event_key)
end
redis.call('XADD', outcomes_key, 'MAXLEN', '~', stream_maxlen, '*',
  unpack(ARGV, first_stream_arg))
redis.call('LPUSH', timeline_key, timeline_item)
redis.call('LTRIM', timeline_key, 0, timeline_maxlen - 1)
redis.call('DEL', lock_key)
return 1
