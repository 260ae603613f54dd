-- Every open circuit with its fields, and the server's time: {now ms, {op, field, value, ...}...}.
local open_key = KEYS[1]
local circuit_prefix = ARGV[1]  -- an operation's circuit key is this prefix and its name

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local reply = {now}
for _, op in ipairs(redis.call('ZRANGE', open_key, 0, -1)) do
  local fields = redis.call('HGETALL', circuit_prefix .. op)
  table.insert(fields, 1, op)
  reply[#reply + 1] = fields
end
return reply
