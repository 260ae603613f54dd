-- Dead-letter an event that has no valid client to lock (it failed validation, or a bug of ours
-- failed it every time): store the letter (its reason counted once), mark the event finished in
-- its ledger and append its outcome to the stream (and to its client's timeline, if it names one).
-- The letter carries the steps its ledger recorded (dead_letter_truth).
local dead_key = KEYS[1]
local dead_index_key = KEYS[2]
local dead_counts_key = KEYS[3]
local ledger_key = KEYS[4]
local outcomes_key = KEYS[5]
local timeline_key = KEYS[6]  -- the ledger key again when the event names no client
local event_key = ARGV[1]
local dead_letter = ARGV[2]
local now_ms = ARGV[3]
local dead_reason = ARGV[4]
local outcome_field = ARGV[5]
local outcome_mark = ARGV[6]
local ledger_ttl_s = ARGV[7]
local stream_maxlen = ARGV[8]
local timeline_item = ARGV[9]  -- the outcome record as JSON
local timeline_maxlen = tonumber(ARGV[10])
local first_stream_arg = 11  -- then the outcome as stream field/value pairs

dead_letter = with_truth(dead_letter, ledger_key, outcome_field, {})
if redis.call('HSET', dead_key, event_key, dead_letter) == 1 then
  redis.call('HINCRBY', dead_counts_key, dead_reason, 1)
end
redis.call('ZADD', dead_index_key, now_ms, event_key)
redis.call('HSET', ledger_key, outcome_field, outcome_mark)
redis.call('EXPIRE', ledger_key, ledger_ttl_s)
redis.call('XADD', outcomes_key, 'MAXLEN', '~', stream_maxlen, '*',
  unpack(ARGV, first_stream_arg))
if timeline_key ~= ledger_key then
  redis.call('LPUSH', timeline_key, timeline_item)
  redis.call('LTRIM', timeline_key, 0, timeline_maxlen - 1)
end
return 1
