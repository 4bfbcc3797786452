-- Record a delivery's outcome in one step: its fields, its event (if any), its dead-letter
-- entry (if any), and give up its claim (only if still held with the token, when one is given).
-- One command, so it can ride in a batch with other deliveries' (bot/store/batching.py) and
-- still be atomic.
-- KEYS[1] the delivery's record, KEYS[2] its claim, KEYS[3] the event stream,
-- KEYS[4] the dead-letter stream.
-- ARGV[1] the claim's token ('' = give it up whoever holds it), then three groups, each a count
-- of field/value pairs followed by the pairs: the record's fields, the event's, the
-- dead-letter entry's (a count of 0 writes nothing).
local i = 2
local function pairs_at()
  local n = tonumber(ARGV[i])
  local out = {}
  for j = 1, n * 2 do
    out[j] = ARGV[i + j]
  end
  i = i + n * 2 + 1
  return out
end
local fields = pairs_at()
if #fields > 0 then
  redis.call('HSET', KEYS[1], unpack(fields))
end
local event = pairs_at()
if #event > 0 then
  redis.call('XADD', KEYS[3], '*', unpack(event))
end
local dead = pairs_at()
if #dead > 0 then
  redis.call('XADD', KEYS[4], '*', unpack(dead))
end
if ARGV[1] == '' or redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
