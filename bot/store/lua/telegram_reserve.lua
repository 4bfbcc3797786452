-- Runs after redis_now.lua (bot/channels/telegram.py).
-- KEYS: chat next.  ARGV: spacing ms, max wait ms (< 0: no limit).
-- Returns {wait ms, start ms, now ms}; wait is -1 (and nothing is taken) when the start would be
-- more than max wait away.
local spacing = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local start = now
local chat_next = tonumber(redis.call('GET', KEYS[1]) or '0')
if chat_next > start then start = chat_next end
local wait = start - now
if max_wait >= 0 and wait > max_wait then
  return {-1, start, now}
end
local next_at = start + spacing
redis.call('SET', KEYS[1], int(next_at), 'PX', int(next_at - now + 1000))
return {wait, start, now}
