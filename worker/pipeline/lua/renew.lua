-- Record the previous step's result (whatever the lease says: it did happen) and renew the
-- lease; when this delivery ends in a controlled way (a retry keeps the lease), also reset the
-- delivery count. Returns 1, or 0 if the lease was lost.
local lock_key = KEYS[1]
local ledger_key = KEYS[2]
local deliveries_key = KEYS[3]
local lease_token = ARGV[1]
local lease_ttl_ms = ARGV[2]
local done_field = ARGV[3]  -- or ''
local done_record = ARGV[4]
local ending = ARGV[5]  -- '1': a controlled ending of this delivery

if done_field ~= '' then redis.call('HSET', ledger_key, done_field, done_record) end
if redis.call('GET', lock_key) ~= lease_token then return 0 end
redis.call('PEXPIRE', lock_key, lease_ttl_ms)
if ending == '1' then redis.call('DEL', deliveries_key) end
return 1
