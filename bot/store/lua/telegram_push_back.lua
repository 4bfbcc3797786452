-- Runs after redis_now.lua (bot/channels/telegram.py).
-- KEYS: chat next.  ARGV: ms from now before the chat's next message may go.
local want = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if want > current then
  redis.call('SET', KEYS[1], int(want), 'PX', int(want - now + 1000))
  return want
end
return current
