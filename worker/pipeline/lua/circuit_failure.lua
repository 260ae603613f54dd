-- Record a systemic failure of one operation; open its circuit if the failures within the
-- window (from enough clients, while the reporting process sees enough of its calls fail) reach
-- the threshold. Times are the Redis server's, so every host agrees.
-- Returns {state, next probe ms, server now ms, since ms}; state 0 closed, 1 open, 2 opened now.
local circuit_key = KEYS[1]
local open_key = KEYS[2]
local fails_key = KEYS[3]
local clients_key = KEYS[4]
local operation = ARGV[1]
local client = ARGV[2]
local error_text = ARGV[3]
local window_ms = tonumber(ARGV[4])
local threshold = tonumber(ARGV[5])
local min_clients = tonumber(ARGV[6])
local ratio_reached = ARGV[7] == '1'
local probe_interval_ms = tonumber(ARGV[8])
local retry_after_ms = tonumber(ARGV[9])
local failure_id = ARGV[10]

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if redis.call('ZSCORE', open_key, operation) then
  -- already open: a probe (or a call sent before this worker knew) failed
  local probe_at = tonumber(redis.call('HGET', circuit_key, 'probe_at_ms') or now)
  if now + retry_after_ms > probe_at then
    probe_at = now + retry_after_ms  -- the API asked for more time (Retry-After)
  end
  redis.call('HSET', circuit_key, 'probe_at_ms', probe_at, 'last_error', error_text,
             'last_failure_ms', now)
  redis.call('HINCRBY', circuit_key, 'failures', 1)
  return {1, probe_at, now, tonumber(redis.call('HGET', circuit_key, 'since_ms') or now)}
end

redis.call('ZADD', fails_key, now, failure_id)
redis.call('ZADD', clients_key, now, client)
redis.call('ZREMRANGEBYSCORE', fails_key, '-inf', now - window_ms)
redis.call('ZREMRANGEBYSCORE', clients_key, '-inf', now - window_ms)
redis.call('ZREMRANGEBYRANK', fails_key, 0, -(threshold * 10) - 1)  -- bounded in size
redis.call('PEXPIRE', fails_key, window_ms)
redis.call('PEXPIRE', clients_key, window_ms)
local failures = redis.call('ZCARD', fails_key)
local clients = redis.call('ZCARD', clients_key)
if not (ratio_reached and failures >= threshold and clients >= min_clients) then
  return {0, 0, now, 0}
end

local first = redis.call('ZRANGE', fails_key, 0, 0, 'WITHSCORES')
local since = tonumber(first[2] or now)
local wait = probe_interval_ms
if retry_after_ms > wait then wait = retry_after_ms end
redis.call('HSET', circuit_key, 'operation', operation, 'since_ms', since, 'opened_ms', now,
           'probe_at_ms', now + wait, 'last_error', error_text, 'last_failure_ms', now,
           'failures', failures, 'clients', clients, 'probes', 0)
redis.call('ZADD', open_key, now, operation)
redis.call('DEL', fails_key, clients_key)
return {2, now + wait, now, since}
