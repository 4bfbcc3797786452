-- Claim a due timer for a lease (bot/store/timers.py `Scheduler.claim`; after timer_lib.lua).
-- KEYS: timers zset, the timer's hash, its case's index (bot/store/timers.py `timer_keys`).
-- ARGV: id, now (score), lease end (score). Returns the attempts (the claim), or 0.
return timer_claim(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3])
