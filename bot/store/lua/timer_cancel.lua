-- Cancel pending or claimed timers (bot/store/timers.py `Scheduler.cancel_all`; after
-- timer_lib.lua). KEYS: timers zset, then each timer's hash.
-- ARGV: when (ISO), seconds to keep the tombstones, then each timer's id.
-- Returns how many were still to fire.
local done = 0
for i = 2, #KEYS do
  done = done + timer_cancel(KEYS[1], KEYS[i], ARGV[i + 1], ARGV[1], ARGV[2])
end
return done
