-- Create timers once (bot/store/timers.py `Scheduler.schedule_many`; after timer_lib.lua).
-- KEYS: timers zset, then per timer: its hash, its case's index.
-- ARGV: per timer: id, due score, packed value or '', number of field/value args for its hash,
-- those args (bot/store/timers.py `timer_args`).
-- Returns how many were created (a timer whose id exists, in any state, is left as it is).
local made, k, a = 0, 2, 1
while a <= #ARGV do
  local count = tonumber(ARGV[a + 3])
  made = made + timer_make(KEYS[1], KEYS[k], KEYS[k + 1], ARGV[a], ARGV[a + 1], ARGV[a + 2],
    a + 4, count)
  k, a = k + 2, a + 4 + count
end
return made
