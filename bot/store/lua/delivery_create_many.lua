-- Create several deliveries of one case, each only if it does not exist yet (as
-- delivery_create.lua does for one), in one call (bot/store/deliveries.py create_many).
-- KEYS: the case's deliveries, then per delivery its record and its outbox.
-- ARGV: per delivery its id, the number of its field/value pairs, then those pairs.
-- Returns one integer per delivery, in order: 1 if created, else 0.
local made = {}
local at = 1
for i = 1, (#KEYS - 1) / 2 do
  local record = KEYS[2 * i]
  local id = ARGV[at]
  local count = tonumber(ARGV[at + 1])
  if redis.call('EXISTS', record) == 1 then
    made[i] = 0
  else
    redis.call('HSET', record, unpack(ARGV, at + 2, at + 1 + 2 * count))
    redis.call('SADD', KEYS[1], id)
    redis.call('XADD', KEYS[2 * i + 1], '*', 'delivery', id)
    made[i] = 1
  end
  at = at + 2 + 2 * count
end
return made
