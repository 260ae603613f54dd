-- Give back a grant's business key (an invoice id) held by an event whose grant never took
-- effect: this event owns the key and its ledger has no record of the grant (neither done nor
-- in progress). Used when the event is dead-lettered and when its dead letter is purged, so a
-- later report of the invoice grants it. The event's last step's record, if given, is written
-- first (whatever happens: it did happen). On a purge (the client's business keys given) the
-- dead letter's hold of an undecided grant in them ends too; a grant done stays recorded.
-- Returns 1 if the key was given back.
local ledger_key = KEYS[1]
local business_key = KEYS[2]
local amount_key = KEYS[3]
local business_keys = KEYS[4]  -- the client's business keys, on a purge; else absent
local event_key = ARGV[1]
local step = ARGV[2]
local done_field = ARGV[3]  -- or ''
local done_record = ARGV[4]
local business_field = ARGV[5]  -- with KEYS[4]

if done_field ~= '' then redis.call('HSET', ledger_key, done_field, done_record) end
if business_keys then
  local kept = redis.call('HGET', business_keys, business_field)
  if kept and string.match(kept, '^(%S+) %S+ held$') == event_key then
    redis.call('HDEL', business_keys, business_field)
  end
end
if redis.call('GET', business_key) ~= event_key then return 0 end
if redis.call('HEXISTS', ledger_key, step) == 1 then return 0 end
redis.call('DEL', business_key, amount_key)
return 1
