-- An arrival message reached an organisation (bot/pipeline/deadlines.py `delivered`; after
-- timer_lib.lua), in one step: the first reach of it (and of it for the version) is recorded;
-- a health centre's first reach is its booking clock's start (the marker is set once); once
-- every recipient has the case's current version, that version's same-day check is cancelled.
-- After case_lib.lua (case_recipients).
-- KEYS: case hash, reached hash, markers hash, timers zset, the version's same-day check timer
-- hash, the health centre's booking escalation timer hash (any key when not a health centre),
-- the case's timer index (both timers' case: bot/store/timers.py `timer_keys`).
-- ARGV: organisation, version, when reached (ISO), now (ISO), seconds a tombstone hash is kept,
-- the same-day check's id, the booking-informed marker ('' when not a health centre), the
-- booking-reported marker, the booking escalation timer's id.
-- Returns {-1} for no case, {0} when cancelled or not a recipient, else {1, when the booking
-- clock started if its timers are still to be made (else ''), the reception unit, the case's
-- created_at, its same_day_by (or ''), then — only when every recipient has been reached and
-- that is not recorded yet — when each recipient was first reached}.
local case = redis.call('HMGET', KEYS[1], 'status', 'recipients', 'version', 'notified_at',
  'same_day_by', 'created_at', 'reception_unit')
if not case[1] then return {-1} end
if case[1] == 'cancelled' then return {0} end
local org, version, at = ARGV[1], ARGV[2], ARGV[3]
local recipients = case_recipients(case[2])
local found = false
for _, o in ipairs(recipients) do
  if o == org then found = true end
end
if not found then return {0} end
redis.call('HSETNX', KEYS[2], org, at)
redis.call('HSETNX', KEYS[2], version .. ':' .. org, at)
local start = ''
if ARGV[7] ~= '' then
  redis.call('HSETNX', KEYS[3], ARGV[7], at)
  if redis.call('HEXISTS', KEYS[3], ARGV[8]) == 0 and not timer_find(KEYS[6], KEYS[7], ARGV[9])
  then
    start = redis.call('HGET', KEYS[3], ARGV[7])
  end
end
local function everyone(fields)
  local times = redis.call('HMGET', KEYS[2], unpack(fields))
  for _, t in ipairs(times) do
    if not t then return nil end
  end
  return times
end
if case[3] == version then
  local fields = {}
  for i, o in ipairs(recipients) do fields[i] = version .. ':' .. o end
  if everyone(fields) then timer_cancel(KEYS[4], KEYS[5], KEYS[7], ARGV[6], ARGV[4], ARGV[5]) end
end
local out = {1, start, case[7], case[6], case[5] or ''}
if not case[4] then
  local firsts = everyone(recipients)
  if firsts then
    for _, t in ipairs(firsts) do out[#out + 1] = t end
  end
end
return out
