-- Close an operation's circuit (a probe was answered): forget it, keep a summary of the outage.
-- Returns 1 if it was open.
local circuit_key = KEYS[1]
local open_key = KEYS[2]
local last_key = KEYS[3]
local operation = ARGV[1]

if redis.call('ZREM', open_key, operation) == 0 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local c = redis.call('HGETALL', circuit_key)
local outage = {closed_ms = now}
for i = 1, #c, 2 do outage[c[i]] = c[i + 1] end
redis.call('HSET', last_key, operation, cjson.encode(outage))
redis.call('DEL', circuit_key)
return 1
