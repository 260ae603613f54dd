-- Prepended to the scripts that write a dead letter (`LuaScript.load(name, "dead_letter_truth")`).
-- A dead letter carries its own truth: its event's ledger records (step -> record, as stored) and
-- the business keys it holds (key -> its entry in the client's business keys), spliced into the
-- letter's JSON, so a replay after the ledger expired, or in another Redis after export/import,
-- finds its done steps (`worker/ops/lua/replay.lua` writes them back).
local function with_truth(letter, ledger_key, outcome_field, holds)
  local flat = redis.call('HGETALL', ledger_key)
  local ledger = {}
  for i = 1, #flat, 2 do
    if flat[i] ~= outcome_field then ledger[flat[i]] = flat[i + 1] end
  end
  return string.sub(letter, 1, -2) .. ',"ledger":' .. cjson.encode(ledger)
    .. ',"holds":' .. cjson.encode(holds) .. '}'
end
