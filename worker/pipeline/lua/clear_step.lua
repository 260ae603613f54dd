-- Forget a step proven not applied; give back its business key and amount if this event holds
-- them (a permanent refusal: another report of the invoice may then grant it).
local ledger_key = KEYS[1]
local business_key = KEYS[2]  -- the ledger key again when nothing is given back
local amount_key = KEYS[3]
local step = ARGV[1]
local event_key = ARGV[2]

redis.call('HDEL', ledger_key, step)
if business_key ~= ledger_key and redis.call('GET', business_key) == event_key then
  redis.call('DEL', business_key, amount_key)
end
return 1
