-- Create a timer once (bot/store/timers.py). KEYS: timers zset, timer hash, case timers.
-- ARGV: id, due score, then the timer's field/value pairs. Returns 1 if created, else 0.
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
return 1
