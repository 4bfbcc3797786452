-- Finish a claimed timer (bot/store/timers.py `Scheduler.complete`; after timer_lib.lua).
-- KEYS: timers zset, the timer's hash, its case's index (bot/store/timers.py `timer_keys`);
-- when it is forgotten, also its case's set of the older layout (keys.case_timers_set), which
-- is only read and cleared otherwise: a forgotten timer must not stay listed there.
-- ARGV: id, the claim (attempts), final state, when (ISO), seconds a tombstone hash is kept
-- (0: no tombstone, the timer is forgotten whole).
-- Returns 1 if done, 0 if the claim is not (or no longer) the caller's.
local done = timer_complete(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
if done == 1 and KEYS[4] then redis.call('SREM', KEYS[4], ARGV[1]) end
return done
