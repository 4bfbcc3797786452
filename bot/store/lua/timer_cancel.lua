-- Cancel pending or claimed timers (bot/store/timers.py `Scheduler.cancel_all`; after
-- timer_lib.lua). KEYS: timers zset, then per timer: its hash, its case's index
-- (bot/store/timers.py `timer_keys`).
-- ARGV: when (ISO), seconds to keep a tombstone hash, then each timer's id.
-- Returns how many were still to fire.
local done = 0
for i = 3, #ARGV do
  local k = 2 * (i - 3) + 2
  done = done + timer_cancel(KEYS[1], KEYS[k], KEYS[k + 1], ARGV[i], ARGV[1], ARGV[2])
end
return done
