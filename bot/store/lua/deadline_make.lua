-- Make deadline timers and escalation-digest entries in one step, while what they are for still
-- stands (bot/pipeline/deadlines.py `_make`; after timer_lib.lua). Nothing is made when the case
-- is missing (returns -1), cancelled, or no longer at the version named (returns 0). An item
-- with a guard is left out while its guard field is in the guard hash: the recipient has
-- acknowledged that version, the health centre has reported its booking.
-- KEYS: timers zset, case hash, guard hash; per timer: its hash, its case's index; per entry:
-- its digest hash.
-- ARGV: version or '', number of timers, number of entries, a case field to set once or '' and
-- its value; per timer: guard or '', then as timer_lib.lua's `timer_make` takes it (id, due
-- score, packed value or '', number of field/value args for its hash, those args:
-- bot/store/timers.py `timer_args`);
-- per entry: guard or '', member, value, seconds the digest lives.
local case = redis.call('HMGET', KEYS[2], 'status', 'version')
if not case[1] then return -1 end
if case[1] == 'cancelled' or (ARGV[1] ~= '' and case[2] ~= ARGV[1]) then return 0 end
if ARGV[4] ~= '' then redis.call('HSETNX', KEYS[2], ARGV[4], ARGV[5]) end
local k, a = 4, 6
for _ = 1, tonumber(ARGV[2]) do
  local count = tonumber(ARGV[a + 4])
  if ARGV[a] == '' or redis.call('HEXISTS', KEYS[3], ARGV[a]) == 0 then
    timer_make(KEYS[1], KEYS[k], KEYS[k + 1], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], a + 5,
      count)
  end
  k, a = k + 2, a + 5 + count
end
for _ = 1, tonumber(ARGV[3]) do
  if ARGV[a] == '' or redis.call('HEXISTS', KEYS[3], ARGV[a]) == 0 then
    redis.call('HSETNX', KEYS[k], ARGV[a + 1], ARGV[a + 2])
    redis.call('EXPIRE', KEYS[k], ARGV[a + 3])
  end
  k, a = k + 1, a + 4
end
return 1
