-- Deliveries (bot/store/deliveries.py): the steps shared by every script that makes or records
-- deliveries. A script using them is this file followed by its own (bot/store/scripts.py
-- `source`).
--
-- A delivery's record is mostly packed (bot/domain/delivery.py `pack_items`, `unpack`): the
-- value of its field in its case's index `index` (a hash; the field is the delivery's id
-- without "{case}:"), its fields as items joined by '|', each a one-letter code and a value
-- ('_' and a name, '=' and the value, for a field without a code). A record of the older
-- layouts is a hash of its own `own`, listed in `index` with the value '' (or in the older
-- set): it is read and written as before.

-- An item's key: its code, or '_' and the field's name.
local function delivery_key(item)
  if string.sub(item, 1, 1) == '_' then return string.match(item, '^(_[^=]*)') end
  return string.sub(item, 1, 1)
end

-- Packed record `packed` ('' for a new one) with `items` merged in, in order: an item takes the
-- place of the one of its key, or is added at the end. An item's value beginning '+' is a time
-- (epoch microseconds), kept relative to the record's time queued (item 'q', which comes first)
-- when that is a number; a value beginning '@' is kept once per case, in `index`'s field '@'
-- (bot/domain/delivery.py `SHARED`), and stands as '@' alone when it is the one kept there.
local function delivery_merge(index, packed, items)
  local out, at = {}, {}
  for item in string.gmatch(packed, '[^|]+') do
    out[#out + 1] = item
    at[delivery_key(item)] = #out
  end
  for _, item in ipairs(items) do
    local key = delivery_key(item)
    local code, value = string.sub(item, 1, 1), string.sub(item, 2)
    if code ~= '_' then
      local mark = string.sub(value, 1, 1)
      if mark == '+' then
        value = string.sub(value, 2)
        local base = at['q'] and string.sub(out[at['q']], 2)
        if base and string.match(base, '^%-?%d+$') then
          value = string.format('%d', tonumber(value) - tonumber(base))
        end
      elseif mark == '@' and #value > 1 then
        local shared = redis.call('HGET', index, '@')
        if not shared then
          shared = string.sub(value, 2)
          redis.call('HSET', index, '@', shared)
        end
        if shared == string.sub(value, 2) then value = '@' end
      end
      item = code .. value
    end
    if at[key] then
      out[at[key]] = item
    else
      out[#out + 1] = item
      at[key] = #out
    end
  end
  return table.concat(out, '|')
end

-- Where delivery `short`'s record is: its packed value, true when it has a hash of its own,
-- nil when there is no such delivery.
local function delivery_find(own, index, short)
  local packed = redis.call('HGET', index, short)
  if packed and packed ~= '' then return packed end
  if redis.call('EXISTS', own) == 1 then return true end
  return nil
end

-- Make delivery `short`'s record from `items`, packed, unless it exists (in any layout).
-- Returns 1 if made.
local function delivery_make(own, index, short, items)
  if redis.call('HEXISTS', index, short) == 1 or redis.call('EXISTS', own) == 1 then
    return 0
  end
  redis.call('HSET', index, short, delivery_merge(index, '', items))
  return 1
end

-- Record fields of delivery `short`: `items` merged into its packed record, or the field/value
-- pairs `fields` set in its own hash; nothing when there is no such delivery.
local function delivery_record(own, index, short, fields, items)
  local found = delivery_find(own, index, short)
  if found == true then
    if #fields > 0 then redis.call('HSET', own, unpack(fields)) end
  elseif found and #items > 0 then
    redis.call('HSET', index, short, delivery_merge(index, found, items))
  end
end

-- ARGV[at] a count, then that many values: the values and the index after them.
local function delivery_args(at)
  local n = tonumber(ARGV[at])
  local out = {}
  for j = 1, n do out[j] = ARGV[at + j] end
  return out, at + n + 1
end
