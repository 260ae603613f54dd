-- Take the probe slot of an open circuit if its probe is due: at most one probe per interval,
-- whichever worker asks first. Returns {'closed'} | {'probe', next probe ms, now ms, since ms}
-- | {'wait', probe ms, now ms, since ms}.
local circuit_key = KEYS[1]
local open_key = KEYS[2]
local operation = ARGV[1]
local probe_interval_ms = tonumber(ARGV[2])

if not redis.call('ZSCORE', open_key, operation) then return {'closed'} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local probe_at = tonumber(redis.call('HGET', circuit_key, 'probe_at_ms') or 0)
local since = tonumber(redis.call('HGET', circuit_key, 'since_ms') or now)
if now < probe_at then return {'wait', probe_at, now, since} end
redis.call('HSET', circuit_key, 'probe_at_ms', now + probe_interval_ms, 'last_probe_ms', now)
redis.call('HINCRBY', circuit_key, 'probes', 1)
return {'probe', now + probe_interval_ms, now, since}
