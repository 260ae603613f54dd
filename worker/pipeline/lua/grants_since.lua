-- The client's grants that began after `judged` (a grant's member, "<event key> <step> <amount>"),
-- each with the state of its ledger record: 'done', 'in_progress' or 'none' (not applied, or
-- forgotten). Evidence of the judged grant is read net of these: a grant of ours applied between
-- two readings is accounted for; one still undecided makes the readings undecidable.
-- Returns {1, member, state, member, state, ...}, or {0} if `judged` is not in the record (it
-- fell off the capped record, or the record expired): then nothing is known.
local grants_key = KEYS[1]
local judged = ARGV[1]
local ledger_prefix = ARGV[2]  -- an event's ledger key is this prefix and its event key

local since = redis.call('ZSCORE', grants_key, judged)
if not since then return {0} end
local judged_event = string.match(judged, '^(%S+) ')
local found = {1}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', grants_key, since, '+inf')) do
  local owner, step = string.match(member, '^(%S+) (%S+) ')
  if owner ~= judged_event then
    local record = redis.call('HGET', ledger_prefix .. owner, step)
    found[#found + 1] = member
    found[#found + 1] = record and cjson.decode(record)['state'] or 'none'
  end
end
return found
