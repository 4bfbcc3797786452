-- Cancel a pending or claimed timer (bot/store/timers.py). KEYS: timers zset, timer hash.
-- ARGV: id, when (ISO), seconds to keep the tombstone.
local state = redis.call('HGET', KEYS[2], 'state')
if state ~= 'pending' and state ~= 'claimed' then return 0 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[2], 'state', 'cancelled', 'done_at', ARGV[2])
redis.call('HDEL', KEYS[2], 'claim')
redis.call('EXPIRE', KEYS[2], ARGV[3])
return 1
