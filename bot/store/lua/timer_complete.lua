-- Finish a claimed timer (bot/store/timers.py). KEYS: timers zset, timer hash.
-- ARGV: id, claim token, final state, when (ISO), seconds to keep the tombstone.
if redis.call('HGET', KEYS[2], 'state') ~= 'claimed' then return 0 end
if redis.call('HGET', KEYS[2], 'claim') ~= ARGV[2] then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'state', ARGV[3], 'done_at', ARGV[4])
redis.call('HDEL', KEYS[2], 'claim')
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
