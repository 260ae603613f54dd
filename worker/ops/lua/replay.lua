-- Replay one batch of planned dead letters atomically (worker/ops/jobs.py, Runner).
-- KEYS: dead hash, dead index, dead counts, operators' index map, replay counts, queue list,
--       queue messages, job record, the job's pending set (replayed events followed to their
--       end by track.lua).
-- The queue's two keys are in the broker's database (worker/pipeline/keyspace.py): the script
-- SELECTs it for them and back (Redis undoes a script's SELECT for the caller anyway).
-- ARGV: timeline maxlen, operators' index prefix, claim prefix, now ms, broker db, records' db,
--       the job's TTL in seconds, then 13 per dead letter:
--       id, digest, reason, ledger key, timeline key, replayed entry, message id, message,
--       replay number, resolve ('' | applied | not_applied), step, resolved step record ('' for
--       none), resolved entry ('' for none). Returns one status per dead letter.
local dead, index, counts, index_of = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local replays, queue, messages, job = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local pending = KEYS[9]
local maxlen = tonumber(ARGV[1])
local ix_prefix, claim_prefix, now = ARGV[2], ARGV[3], ARGV[4]
local broker_db, data_db = ARGV[5], ARGV[6]
local job_ttl = tonumber(ARGV[7])
local statuses, ids, pairs_replays, pairs_messages, message_ids = {}, {}, {}, {}, {}
local by_reason, timelines = {}, {}
for i = 8, #ARGV, 13 do
  local id, digest, reason = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local ledger, timeline, entry = ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
  local message_id, message, replay = ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
  local resolve, step, step_record, resolved = ARGV[i + 9], ARGV[i + 10], ARGV[i + 11], ARGV[i + 12]
  local record = redis.call('HGET', dead, id)
  local status = 'ok'
  if not record then
    status = 'gone'
  elseif redis.sha1hex(record) ~= digest then
    status = 'changed'
  elseif redis.call('EXISTS', claim_prefix .. id) == 1 then
    status = 'busy'
  end
  statuses[#statuses + 1] = status
  if status == 'ok' then
    ids[#ids + 1] = id
    by_reason[reason] = (by_reason[reason] or 0) + 1
    -- the steps the letter carries (its ledger may have expired, or be in another Redis): back
    -- in the ledger, unless it holds them still (worker/pipeline/lua/dead_letter_truth.lua)
    local decoded, letter = pcall(cjson.decode, record)
    if decoded and type(letter['ledger']) == 'table' then
      for name, kept in pairs(letter['ledger']) do redis.call('HSETNX', ledger, name, kept) end
    end
    redis.call('HDEL', ledger, '_outcome')
    if resolve == 'applied' and step ~= '' then
      redis.call('HSET', ledger, step, step_record)
    elseif resolve == 'not_applied' and step ~= '' then
      redis.call('HDEL', ledger, step)
    end
    pairs_messages[#pairs_messages + 1] = message_id
    pairs_messages[#pairs_messages + 1] = message
    message_ids[#message_ids + 1] = message_id
    pairs_replays[#pairs_replays + 1] = id
    pairs_replays[#pairs_replays + 1] = replay
    if resolved ~= '' then redis.call('LPUSH', timeline, resolved) end
    redis.call('LPUSH', timeline, entry)
    timelines[timeline] = true
  end
end
if #ids > 0 then
  local made = redis.call('HMGET', index_of, unpack(ids))
  local from_index = {}
  for n, raw in ipairs(made) do
    if raw then
      for dim, value in pairs(cjson.decode(raw)) do
        if dim == 'lex' then  -- members of the one prefix-search zset: 'value\0dim\0id'
          local name = ix_prefix .. 'lex:all'
          from_index[name] = from_index[name] or {}
          for _, member in ipairs(value) do table.insert(from_index[name], member) end
        elseif dim == 'words' then  -- the detail's words: one zset each
          for _, word in ipairs(value) do
            local name = ix_prefix .. 'word:' .. word
            from_index[name] = from_index[name] or {}
            table.insert(from_index[name], ids[n])
          end
        elseif dim ~= 'at' then
          local name = ix_prefix .. dim .. ':' .. value
          from_index[name] = from_index[name] or {}
          table.insert(from_index[name], ids[n])
        end
      end
    end
  end
  for name, members in pairs(from_index) do redis.call('ZREM', name, unpack(members)) end
  redis.call('HDEL', index_of, unpack(ids))
  redis.call('HDEL', dead, unpack(ids))
  redis.call('ZREM', index, unpack(ids))
  for reason, n in pairs(by_reason) do redis.call('HINCRBY', counts, reason, -n) end
  if broker_db ~= data_db then redis.call('SELECT', broker_db) end
  redis.call('HSET', messages, unpack(pairs_messages))
  redis.call('RPUSH', queue, unpack(message_ids))
  if broker_db ~= data_db then redis.call('SELECT', data_db) end
  redis.call('HSET', replays, unpack(pairs_replays))
  for timeline in pairs(timelines) do redis.call('LTRIM', timeline, 0, maxlen - 1) end
  redis.call('SADD', pending, unpack(ids))
  redis.call('EXPIRE', pending, job_ttl)
  redis.call('HINCRBY', job, 'pending', #ids)
end
redis.call('HINCRBY', job, 'done', #ids)
redis.call('HINCRBY', job, 'skipped', #statuses - #ids)
redis.call('HSET', job, 'updated_ms', now)
return statuses
