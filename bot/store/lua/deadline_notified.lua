-- Record once when every recipient had been reached and whether within the same working day
-- (bot/pipeline/deadlines.py `_record_notified`; after timer_lib.lua), and cancel the same-day
-- watch's closing timer unless it is the one firing.
-- KEYS: case hash, timers zset, the closing timer's hash and its case's index
-- (bot/store/timers.py `timer_keys`).
-- ARGV: when everyone had been reached (ISO), 'true' or 'false', now (ISO), seconds a tombstone
-- hash is kept, the closing timer's id ('' to leave it).
redis.call('HSETNX', KEYS[1], 'notified_at', ARGV[1])
redis.call('HSETNX', KEYS[1], 'notified_same_day', ARGV[2])
if ARGV[5] ~= '' then timer_cancel(KEYS[2], KEYS[3], KEYS[4], ARGV[5], ARGV[3], ARGV[4]) end
return 1
