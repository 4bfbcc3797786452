-- Create deliveries of one case (one or several), each only if it does not exist yet, in one
-- call (bot/store/deliveries.py create_many, which `create` calls for one; after
-- delivery_lib.lua).
-- KEYS: the case's delivery index, then per delivery its own hash (the older layout's, only
-- looked for) and its outbox.
-- ARGV: the length of the "{case}:" prefix every id begins with, then per delivery its id, the
-- number of its packed items, then those items (bot/domain/delivery.py `pack_items`).
-- Returns one integer per delivery, in order: 1 if created, else 0.
local made = {}
local skip = tonumber(ARGV[1])
local at = 2
for i = 1, (#KEYS - 1) / 2 do
  local id = ARGV[at]
  local items
  items, at = delivery_args(at + 1)
  -- Packed in the index under the id without the case's prefix (the key names the case), so
  -- the hash stays a listpack (bot/store/keys.py case_delivery_ids).
  made[i] = delivery_make(KEYS[2 * i], KEYS[1], string.sub(id, skip + 1), items)
  if made[i] == 1 then redis.call('XADD', KEYS[2 * i + 1], '*', 'delivery', id) end
end
return made
