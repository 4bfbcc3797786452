-- The ids of the cases a listing shows (bot/store/cases.py `CaseStore.ids`), in one round trip.
-- KEYS: 1 the set every listed case is in (all cases, or the open ones), then two keys per
--   filter (the municipality, the organisation): its sorted set of case ids and its older
--   layout's set (read, never added to; empty once no case of that layout is left).
-- Returns the ids in KEYS[1] that every filter lists, in no order.
if #KEYS == 1 then return redis.call('SMEMBERS', KEYS[1]) end
local found
for i = 2, #KEYS, 2 do
  local listed = {}
  for _, id in ipairs(redis.call('ZRANGE', KEYS[i], 0, -1)) do listed[id] = true end
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[i + 1])) do listed[id] = true end
  if found then
    for id in pairs(found) do
      if not listed[id] then found[id] = nil end
    end
  else
    found = listed
  end
end
local ids = {}
for id in pairs(found) do
  if redis.call('SISMEMBER', KEYS[1], id) == 1 then ids[#ids + 1] = id end
end
return ids
