-- Create several deliveries of one case, each only if it does not exist yet (as
-- delivery_create.lua does for one), in one call (bot/store/deliveries.py create_many).
-- KEYS: the case's delivery ids, then per delivery its record and its outbox.
-- ARGV: the length of the "{case}:" prefix every id begins with, then per delivery its id,
-- the number of its field/value pairs, then those pairs.
-- Returns one integer per delivery, in order: 1 if created, else 0.
local made = {}
local skip = tonumber(ARGV[1])
local at = 2
for i = 1, (#KEYS - 1) / 2 do
  local record = KEYS[2 * i]
  local id = ARGV[at]
  local count = tonumber(ARGV[at + 1])
  if redis.call('EXISTS', record) == 1 then
    made[i] = 0
  else
    redis.call('HSET', record, unpack(ARGV, at + 2, at + 1 + 2 * count))
    -- Indexed without the case's prefix (the key names the case), so the hash stays a
    -- listpack (bot/store/keys.py case_delivery_ids).
    redis.call('HSET', KEYS[1], string.sub(id, skip + 1), '')
    redis.call('XADD', KEYS[2 * i + 1], '*', 'delivery', id)
    made[i] = 1
  end
  at = at + 2 + 2 * count
end
return made
