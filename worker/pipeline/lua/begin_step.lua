-- Begin a grant: record the previous step's result (whatever the lease says: it did happen),
-- renew the lease, claim the grant's business key (an invoice id) for this event and amount,
-- mark the step in progress and add it to the client's grants.
--
-- A business key is held only by an event whose grant took effect or may still take effect.
-- When another event (the owner) holds it, the owner's ledger decides:
--   owner's grant done             -> 'duplicate' (a record pointing at the owner), or
--                                     'conflict' if the amounts differ
--   owner's grant in progress      -> 'conflict' if the amounts differ; else 'held' if the owner
--                                     has finished (dead-lettered, outcome undecided), or
--                                     'pending' while it is still being worked on
--   owner has no record of a grant -> taken over ('claimed') if the owner has finished (its
--                                     grant never took effect); else 'conflict' if the amounts
--                                     differ, or 'pending' (it waits for a retry)
-- When no event holds it (the owner keys expired with the ledger), the client's business keys
-- (kept for its life, written by finish.lua) decide: another event's grant done -> 'duplicate' (or
-- 'conflict'), held undecided by a dead letter -> 'held' (or 'conflict'); our own done -> 'duplicate'.
-- Nothing is written for 'conflict', 'held' and 'pending': the caller dead-letters or waits.
-- Returns {lease held, status, owner's event key, owner's amount or '', owner's dead reason}.
local lock_key = KEYS[1]
local ledger_key = KEYS[2]
local business_key = KEYS[3]  -- holds the owning event's key
local amount_key = KEYS[4]  -- holds "<owning event key> <amount>"
local dead_key = KEYS[5]  -- dead letters, to name why an owner was dead-lettered
local grants_key = KEYS[6]  -- the client's grants, by start time
local business_keys = KEYS[7]  -- the client's business keys, for its life
local lease_token = ARGV[1]
local lease_ttl_ms = ARGV[2]
local step = ARGV[3]
local in_progress_record = ARGV[4]
local event_key = ARGV[5]
local ledger_ttl_s = ARGV[6]
local amount = ARGV[7]
local duplicate_template = ARGV[8]  -- a done record without its result, for a duplicate
local ledger_prefix = ARGV[9]  -- an event's ledger key is this prefix and its event key
local outcome_field = ARGV[10]
local done_field = ARGV[11]  -- the previous step's record, or ''
local done_record = ARGV[12]
local grant_member = ARGV[13]  -- "<event key> <step> <amount>"
local grants_kept = tonumber(ARGV[14])
local business_field = ARGV[15]  -- the business key (e.g. 'invoice:INV-1')

if done_field ~= '' then redis.call('HSET', ledger_key, done_field, done_record) end
if redis.call('GET', lock_key) ~= lease_token then return {0, '', '', '', ''} end
redis.call('PEXPIRE', lock_key, lease_ttl_ms)

local function claim()
  redis.call('SET', business_key, event_key, 'EX', ledger_ttl_s)
  redis.call('SET', amount_key, event_key .. ' ' .. amount, 'EX', ledger_ttl_s)
end

local function owner_amount(owner)
  local claimed = redis.call('GET', amount_key)
  if not claimed then return '' end
  local claimant, value = string.match(claimed, '^(%S+) (%S+)$')
  if claimant == owner then return value end
  return ''
end

local function owner_state(owner)
  local owner_ledger = ledger_prefix .. owner
  local record = redis.call('HGET', owner_ledger, step)
  local state = record and cjson.decode(record)['state'] or 'none'
  return state, redis.call('HEXISTS', owner_ledger, outcome_field) == 1
end

local function dead_reason(owner)
  local letter = redis.call('HGET', dead_key, owner)
  if not letter then return '' end
  return cjson.decode(letter)['reason'] or ''
end

local owner = redis.call('GET', business_key)
local status = 'claimed'
local claimed_amount = amount
local kept = not owner and redis.call('HGET', business_keys, business_field)
if kept then
  local kept_held
  owner, claimed_amount, kept_held = string.match(kept, '^(%S+) (%S+) ?(%S*)$')
  if claimed_amount ~= amount then
    status = 'conflict'
  elseif kept_held == '' then
    status = 'duplicate'
  elseif owner ~= event_key then
    status = 'held'
  else
    claim()  -- our own undecided grant, replayed: ours to decide
  end
elseif not owner then
  claim()
  owner = event_key
elseif owner ~= event_key then
  claimed_amount = owner_amount(owner)
  local state, finished = owner_state(owner)
  local differs = claimed_amount ~= amount
  if state == 'done' then
    status = differs and 'conflict' or 'duplicate'
  elseif state == 'in_progress' then
    status = (differs and 'conflict') or (finished and 'held') or 'pending'
  elseif finished then
    claim()  -- the owner finished and its grant never took effect: the key is ours
    owner, claimed_amount = event_key, amount
  else
    status = differs and 'conflict' or 'pending'
  end
end

if status == 'claimed' then
  redis.call('HSET', ledger_key, step, in_progress_record)
  -- in the client's grants before the call, so no grant of ours that may have taken effect is
  -- ever missing when another grant's evidence is judged; scored by the server's clock, one
  -- clock for every worker, so the order of two grants is the order they began
  local now = redis.call('TIME')
  redis.call('ZADD', grants_key, now[1] * 1000 + math.floor(now[2] / 1000), grant_member)
  redis.call('ZREMRANGEBYRANK', grants_key, 0, -grants_kept - 1)
  redis.call('EXPIRE', grants_key, ledger_ttl_s)
elseif status == 'duplicate' then
  local duplicate = cjson.decode(duplicate_template)
  duplicate['result'] = {duplicate_of = owner}
  redis.call('HSET', ledger_key, step, cjson.encode(duplicate))
else
  return {1, status, owner, claimed_amount, dead_reason(owner)}
end
redis.call('EXPIRE', ledger_key, ledger_ttl_s)
return {1, status, owner, claimed_amount, ''}
