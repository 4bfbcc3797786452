-- Create a delivery record, index it under its case and queue its send, only if it does not
-- exist yet (bot/pipeline/fanout.py; after delivery_lib.lua). KEYS: the delivery's own hash
-- (the older layout's, only looked for), the case's delivery index, outbox.
-- ARGV: delivery id, the length of its "{case}:" prefix, then the record's packed items
-- (bot/domain/delivery.py `pack_items`). Returns 1 if created, else 0.
local items = {}
for j = 3, #ARGV do items[#items + 1] = ARGV[j] end
-- The record is the value of the id's field, without the case's prefix (the key names the
-- case): short fields and values keep the hash a listpack (bot/store/keys.py case_delivery_ids).
local made = delivery_make(KEYS[1], KEYS[2], string.sub(ARGV[1], tonumber(ARGV[2]) + 1), items)
if made == 1 then redis.call('XADD', KEYS[3], '*', 'delivery', ARGV[1]) end
return made
