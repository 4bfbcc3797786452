-- Runs after redis_now.lua (bot/channels/telegram.py).
-- KEYS: bot log, chat done, chat log.  ARGV: member, chat spacing ms, bot limit, bot window ms,
-- in-flight ms, poll ms, chat limit (0: none), chat window ms.
-- Returns {1, 0} when the message may go now (it is logged as in flight), {2, wait ms} when its
-- chat must wait, {0, wait ms} when the bot's budget is spent.
local inflight = tonumber(ARGV[5])
local poll = tonumber(ARGV[6])
local done = tonumber(redis.call('GET', KEYS[2]) or '0')
local gap = done + tonumber(ARGV[2]) - now
if gap > 0 then return {2, gap} end

-- A sliding log: fewer than `limit` answered within `window` before now (or still in flight).
-- Answered at or before now - window: Telegram stamped it earlier still, and will stamp this
-- one later than now, so it is outside this one's window for certain. Returns ms to wait, or 0.
local function full(key, limit, window)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now - window))
  local count = redis.call('ZCARD', key)
  if count < limit then return 0 end
  -- Wait until enough of the oldest leave the window; one still in flight has no answer time
  -- yet, so look again shortly.
  local k = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
  local free = tonumber(k[2]) + window + 1 - now
  if free > window + 1 then free = poll end
  return free
end

local chat_limit = tonumber(ARGV[7])
local chat_window = tonumber(ARGV[8])
if chat_limit > 0 then
  local wait = full(KEYS[3], chat_limit, chat_window)
  if wait > 0 then return {2, wait} end
end
local bot_window = tonumber(ARGV[4])
local wait = full(KEYS[1], tonumber(ARGV[3]), bot_window)
if wait > 0 then return {0, wait} end

redis.call('ZADD', KEYS[1], int(now + inflight), ARGV[1])
redis.call('PEXPIRE', KEYS[1], int(inflight + bot_window))
if chat_limit > 0 then
  redis.call('ZADD', KEYS[3], int(now + inflight), ARGV[1])
  redis.call('PEXPIRE', KEYS[3], int(inflight + chat_window))
end
return {1, 0}
