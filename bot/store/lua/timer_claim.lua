-- Claim a due timer for a lease (bot/store/timers.py). KEYS: timers zset, timer hash.
-- ARGV: id, now (score), lease end (score), claim token, now (ISO). Returns attempts, or 0.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) > tonumber(ARGV[2]) then return 0 end
local state = redis.call('HGET', KEYS[2], 'state')
if state ~= 'pending' and state ~= 'claimed' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[2], 'state', 'claimed', 'claim', ARGV[4], 'claimed_at', ARGV[5])
return redis.call('HINCRBY', KEYS[2], 'attempts', 1)
