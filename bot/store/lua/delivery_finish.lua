-- Record a delivery's outcome in one step: its fields, its event (if any), its dead-letter
-- entry (if any), and give up its claim (only if still held with the token, when one is given).
-- One command, so it can ride in a batch with other deliveries' (bot/store/batching.py) and
-- still be atomic. After delivery_lib.lua: the record is unpacked, merged and packed again
-- here (or, of the older layout, its own hash written); nothing is written to a record that
-- does not exist.
-- KEYS[1] the delivery's own hash (older layout), KEYS[2] its case's delivery index, KEYS[3]
-- its claim, KEYS[4] the event stream, KEYS[5] the dead-letter stream.
-- ARGV[1] the claim's token ('' = give it up whoever holds it), ARGV[2] the delivery's id
-- without "{case}:", then four groups, each a count followed by that many values: the
-- record's field/value pairs (for its own hash), its packed items (bot/domain/delivery.py
-- `pack_items`), the event's field/value pairs, the dead-letter entry's (none writes nothing).
local fields, at = delivery_args(3)
local items
items, at = delivery_args(at)
local event
event, at = delivery_args(at)
local dead = delivery_args(at)
delivery_record(KEYS[1], KEYS[2], ARGV[2], fields, items)
if #event > 0 then
  redis.call('XADD', KEYS[4], '*', unpack(event))
end
if #dead > 0 then
  redis.call('XADD', KEYS[5], '*', unpack(dead))
end
if ARGV[1] == '' or redis.call('GET', KEYS[3]) == ARGV[1] then
  redis.call('DEL', KEYS[3])
end
return 1
