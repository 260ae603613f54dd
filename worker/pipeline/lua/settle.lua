-- Settle another event's dangling grant in its own ledger, only if the record is still the one
-- that was judged (compare and set): done (`record`), or forgotten ('') so that event sends its
-- grant afresh. Returns 1 if settled.
local ledger_key = KEYS[1]
local step = ARGV[1]
local judged_record = ARGV[2]
local record = ARGV[3]  -- or '' to forget the step

if redis.call('HGET', ledger_key, step) ~= judged_record then return 0 end
if record == '' then
  redis.call('HDEL', ledger_key, step)
else
  redis.call('HSET', ledger_key, step, record)
end
return 1
