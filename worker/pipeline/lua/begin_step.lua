-- Begin a grant: record the previous step's result (whatever the lease says: it did happen),
-- renew the lease, claim the grant's business key (an invoice id) for this event and amount,
-- and mark the step in progress. The same effect claimed by another event for the same amount
-- makes this step a duplicate of it; for another amount, a conflict (nothing is written: the
-- caller dead-letters the event and a human decides).
-- Returns {lease held, owner's event key, owner's amount or '', conflict}.
local lock_key = KEYS[1]
local ledger_key = KEYS[2]
local business_key = KEYS[3]  -- holds the owning event's key
local amount_key = KEYS[4]  -- holds "<owning event key> <amount>"
local lease_token = ARGV[1]
local lease_ttl_ms = ARGV[2]
local step = ARGV[3]
local in_progress_record = ARGV[4]
local event_key = ARGV[5]
local ledger_ttl_s = ARGV[6]
local amount = ARGV[7]
local duplicate_template = ARGV[8]  -- a done record without its result, for a duplicate
local done_field = ARGV[9]  -- the previous step's record, or ''
local done_record = ARGV[10]

if done_field ~= '' then redis.call('HSET', ledger_key, done_field, done_record) end
if redis.call('GET', lock_key) ~= lease_token then return {0, '', '', 0} end
redis.call('PEXPIRE', lock_key, lease_ttl_ms)

if redis.call('SET', business_key, event_key, 'NX', 'EX', ledger_ttl_s) then
  redis.call('SET', amount_key, event_key .. ' ' .. amount, 'EX', ledger_ttl_s)
end
local owner = redis.call('GET', business_key)
local owner_amount = ''
local claim = redis.call('GET', amount_key)
if claim then
  local claimant, claimed = string.match(claim, '^(%S+) (%S+)$')
  if claimant == owner then owner_amount = claimed end
end

if owner == event_key then
  redis.call('HSET', ledger_key, step, in_progress_record)
elseif owner_amount ~= amount then
  return {1, owner, owner_amount, 1}
else
  local duplicate = cjson.decode(duplicate_template)
  duplicate['result'] = {duplicate_of = owner}
  redis.call('HSET', ledger_key, step, cjson.encode(duplicate))
end
redis.call('EXPIRE', ledger_key, ledger_ttl_s)
return {1, owner, owner_amount, 0}
