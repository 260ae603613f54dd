-- Open an attempt of an event: report it finished if its ledger has an outcome; otherwise take
-- (or take back) the client's lease, count the delivery, and read the client state and ledger.
-- Returns {'finished', outcome} | {'busy', 0} | {'locked', deliveries, state, ledger fields}.
local ledger_key = KEYS[1]
local lock_key = KEYS[2]
local client_key = KEYS[3]
local deliveries_key = KEYS[4]
local lease_token = ARGV[1]
local lease_ttl_ms = ARGV[2]
local outcome_field = ARGV[3]
local deliveries_ttl_ms = ARGV[4]

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
return {'locked', deliveries, state, redis.call('HGETALL', ledger_key)}
