-- Add attempts that failed on the relay to a delivery's count of them (bot/store/deliveries.py
-- `add_relay_attempts`; after delivery_lib.lua). KEYS: the delivery's own hash (older
-- layout), its case's delivery index. ARGV: its id without "{case}:", the attempts to add.
-- Returns the total (the count added when there is no such delivery: nothing is written).
local found = delivery_find(KEYS[1], KEYS[2], ARGV[1])
local count = tonumber(ARGV[2])
if found == true then return redis.call('HINCRBY', KEYS[1], 'relay_attempts', count) end
if not found then return count end
local total = count
for item in string.gmatch(found, '[^|]+') do
  if string.sub(item, 1, 1) == 'n' then total = total + (tonumber(string.sub(item, 2)) or 0) end
end
redis.call('HSET', KEYS[2], ARGV[1], delivery_merge(KEYS[2], found, {'n' .. string.format('%d', total)}))
return total
