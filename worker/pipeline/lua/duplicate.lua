-- Record a delivery of an event that had already finished: its outcome on the stream and on the
-- client's timeline (no lease: nothing else changes).
local outcomes_key = KEYS[1]
local timeline_key = KEYS[2]
local stream_maxlen = ARGV[1]
local timeline_item = ARGV[2]  -- the outcome record as JSON
local timeline_maxlen = tonumber(ARGV[3])
local first_stream_arg = 4  -- then the outcome as stream field/value pairs

redis.call('XADD', outcomes_key, 'MAXLEN', '~', stream_maxlen, '*',
  unpack(ARGV, first_stream_arg))
redis.call('LPUSH', timeline_key, timeline_item)
redis.call('LTRIM', timeline_key, 0, timeline_maxlen - 1)
return 1
