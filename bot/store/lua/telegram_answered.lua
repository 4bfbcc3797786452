-- Runs after redis_now.lua (bot/channels/telegram.py).
-- KEYS: bot log, chat done, chat log.  ARGV: member.  "This message was answered now" (Redis
-- time): the bot's log, the chat's spacing and a group's log all count from here.
redis.call('ZADD', KEYS[1], 'XX', int(now), ARGV[1])
redis.call('SET', KEYS[2], int(now), 'PX', 120000)
redis.call('ZADD', KEYS[3], 'XX', int(now), ARGV[1])
return now
