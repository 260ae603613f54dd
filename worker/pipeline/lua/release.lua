-- Give the lease back early, only if it is still ours. A controlled early release also resets
-- the delivery count: the count measures deliveries that died before any ending.
local lock_key = KEYS[1]
local deliveries_key = KEYS[2]
local lease_token = ARGV[1]

if redis.call('GET', lock_key) == lease_token then
  redis.call('DEL', deliveries_key)
  return redis.call('DEL', lock_key)
end
return 0
