-- Open an attempt of an event: report it finished if its ledger has an outcome; otherwise take
-- (or take back) the client's lease, count the delivery, and read the client state and ledger.
-- Returns {'finished', outcome} | {'busy', 0}
--   | {'locked', deliveries, state, ledger fields, dangling grants (member, record pairs)}.
local ledger_key = KEYS[1]
local lock_key = KEYS[2]
local client_key = KEYS[3]
local deliveries_key = KEYS[4]
local grants_key = KEYS[5]  -- the client's grants, by start time
local lease_token = ARGV[1]
local lease_ttl_ms = ARGV[2]
local outcome_field = ARGV[3]
local deliveries_ttl_ms = ARGV[4]
local event_key = ARGV[5]
local ledger_prefix = ARGV[6]  -- an event's ledger key is this prefix and its event key
local grants_checked = tonumber(ARGV[7])

local outcome = redis.call('HGET', ledger_key, outcome_field)
if outcome then return {'finished', outcome} end
if redis.call('GET', lock_key) == lease_token then
  -- our own lease: kept for this retry, or from before a Redis outage; take it back
  redis.call('PEXPIRE', lock_key, lease_ttl_ms)
elseif not redis.call('SET', lock_key, lease_token, 'NX', 'PX', lease_ttl_ms) then
  return {'busy', 0}
end
local deliveries = redis.call('INCR', deliveries_key)
redis.call('PEXPIRE', deliveries_key, deliveries_ttl_ms)
local state = redis.call('GET', client_key) or ''

-- Dangling grants: another event's grant of this client, in progress in the ledger of an event
-- that has not finished (its worker died mid-call). The caller judges them before anything else.
local dangling = {}
for _, member in ipairs(redis.call('ZREVRANGE', grants_key, 0, grants_checked - 1)) do
  local owner, step = string.match(member, '^(%S+) (%S+) ')
  if owner ~= event_key then
    local owner_ledger = ledger_prefix .. owner
    local record = redis.call('HGET', owner_ledger, step)
    if record and cjson.decode(record)['state'] == 'in_progress'
        and redis.call('HEXISTS', owner_ledger, outcome_field) == 0 then
      dangling[#dangling + 1] = member
      dangling[#dangling + 1] = record
    end
  end
end
return {'locked', deliveries, state, redis.call('HGETALL', ledger_key), dangling}
