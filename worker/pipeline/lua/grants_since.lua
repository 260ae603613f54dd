-- The client's grants started at or after `since_ms` (other than `event_key`'s own), each with
-- the state of its ledger record: 'done', 'in_progress' or 'none' (not applied, or forgotten).
-- Evidence of a grant is judged net of these: a grant of ours applied between two readings is
-- accounted for, one still undecided makes the readings undecidable.
-- Returns {member, state, member, state, ...}.
local grants_key = KEYS[1]
local since_ms = ARGV[1]
local event_key = ARGV[2]
local ledger_prefix = ARGV[3]

local found = {}
for _, member in ipairs(redis.call('ZRANGEBYSCORE', grants_key, since_ms, '+inf')) do
  local owner, step = string.match(member, '^(%S+) (%S+) ')
  if owner ~= event_key then
    local record = redis.call('HGET', ledger_prefix .. owner, step)
    found[#found + 1] = member
    found[#found + 1] = record and cjson.decode(record)['state'] or 'none'
  end
end
return found
