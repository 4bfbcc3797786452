-- One case's members of the open-deadline sets (bot/runtime/metrics.py `keep_deadlines`), kept
-- without WATCH: a first call reads what they derive from, and the members now there; a second
-- writes the members the caller worked out, only if what they derive from is still what the
-- first call read (else it writes nothing and returns 0: the caller reads again).
-- After case_lib.lua (case_recipients).
-- KEYS: case hash, acks hash, markers hash, ACK_DEADLINES, BOOKING_DEADLINES.
-- ARGV: the case's member prefix ("{case}|"), the booking-informed and booking-reported marker
-- prefixes, then
--   to read: '', the number of organisations to look at besides the recipients, their ids.
--     Returns {what the members derive from (JSON), then per organisation looked at: its id,
--     its score in ACK_DEADLINES or '', its score in BOOKING_DEADLINES or ''}.
--   to write: what the first call read (JSON); for ACK_DEADLINES then BOOKING_DEADLINES: the
--     number of members to remove, those, the number to set, then member and score of each.
--     Returns 1 if written, 0 if what was read has changed.
local function inputs()
  local case = redis.call('HMGET', KEYS[1], 'version', 'status', 'booking', 'updated_at',
    'recipients')
  local out = {case[1] or '', case[2] or '', case[3] and '1' or '', case[4] or '', case[5] or ''}
  if case[5] then
    for _, org in ipairs(case_recipients(case[5])) do
      local acked = case[1] and redis.call('HEXISTS', KEYS[2], case[1] .. ':' .. org) == 1
      out[#out + 1] = org
      out[#out + 1] = acked and '1' or ''
      out[#out + 1] = redis.call('HGET', KEYS[3], ARGV[2] .. org) or ''
      out[#out + 1] = redis.call('HEXISTS', KEYS[3], ARGV[3] .. org) == 1 and '1' or ''
    end
  end
  return out
end

if ARGV[4] == '' then
  local read = inputs()
  local reply = {cjson.encode(read)}
  local seen = {}
  local function look(org)
    if seen[org] then return end
    seen[org] = true
    local member = ARGV[1] .. org
    reply[#reply + 1] = org
    reply[#reply + 1] = redis.call('ZSCORE', KEYS[4], member) or ''
    reply[#reply + 1] = redis.call('ZSCORE', KEYS[5], member) or ''
  end
  for i = 6, #read, 4 do look(read[i]) end
  for i = 6, 5 + tonumber(ARGV[5]) do look(ARGV[i]) end
  return reply
end

if cjson.encode(inputs()) ~= ARGV[4] then return 0 end
local a = 5
for set = 4, 5 do
  local gone = tonumber(ARGV[a])
  if gone > 0 then redis.call('ZREM', KEYS[set], unpack(ARGV, a + 1, a + gone)) end
  a = a + 1 + gone
  local kept = tonumber(ARGV[a])
  for i = a + 1, a + 2 * kept, 2 do redis.call('ZADD', KEYS[set], ARGV[i + 1], ARGV[i]) end
  a = a + 1 + 2 * kept
end
return 1
