-- Runs after redis_now.lua (bot/channels/telegram.py): the Telegram limiter, for a batch of
-- messages in one call, each step applied in order as if called alone.
-- KEYS[1]: the bot's log; then three per step: the chat's next start, its last answer, its log.
-- ARGV[1..5]: bot limit, bot window ms, in-flight ms, poll ms, chat hold ms; then six per step:
--   op, member, chat spacing ms, ms, chat limit (0: none), chat window ms
-- where op is
--   'a'  answered: the message `member` was answered `ms` ago (measured by the caller, so a
--        late call still records when the answer came);
--   'p'  push back: nothing goes to the chat for `ms` from now (Telegram's retry_after);
--   'r'  reserve: take the chat's next start, unless it is more than `ms` away (ms < 0: any);
--   't'  take: may `member` go now? (counted in flight if so);
--   'rt' reserve, then take at once if the start has come.
-- Returns {now, then three per step: code, wait ms, at ms}. Codes: 1 done / may go now,
-- 0 the bot's budget is spent (wait), 2 the chat must wait, 3 reserved for a later start
-- (wait, at), -1 not reserved: the start is more than `ms` away (wait, at).
local bot_limit = tonumber(ARGV[1])
local bot_window = tonumber(ARGV[2])
local inflight = tonumber(ARGV[3])
local poll = tonumber(ARGV[4])
local chat_hold = tonumber(ARGV[5])
local bot_log = KEYS[1]

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

local function answered(done_key, log_key, member, ago)
  local at = now - math.max(ago, 0)
  redis.call('ZADD', bot_log, 'XX', int(at), member)
  redis.call('ZADD', log_key, 'XX', int(at), member)
  -- Answers may be recorded out of order (several processes): the chat's last one counts.
  if at > tonumber(redis.call('GET', done_key) or '0') then
    redis.call('SET', done_key, int(at), 'PX', 120000)
  end
  return {1, 0, at}
end

local function push_back(next_key, ms)
  local want = now + ms
  local current = tonumber(redis.call('GET', next_key) or '0')
  if want > current then
    redis.call('SET', next_key, int(want), 'PX', int(want - now + 1000))
    current = want
  end
  return {1, current - now, current}
end

local function reserve(next_key, spacing, max_wait)
  local start = now
  local chat_next = tonumber(redis.call('GET', next_key) or '0')
  if chat_next > start then start = chat_next end
  local wait = start - now
  if max_wait >= 0 and wait > max_wait then return {-1, wait, start} end
  local next_at = start + spacing
  redis.call('SET', next_key, int(next_at), 'PX', int(next_at - now + 1000))
  return {wait > 0 and 3 or 1, wait, start}
end

local function take(done_key, log_key, member, spacing, chat_limit, chat_window)
  local done = tonumber(redis.call('GET', done_key) or '0')
  local gap = done + spacing - now
  if gap > 0 then return {2, gap, now} end
  -- Another message to the chat taken within `chat_hold` ms and not answered yet (another
  -- process's: in flight, its score is when taken + `inflight`) holds this one until its
  -- answer, from which the spacing above counts.
  local held = redis.call('ZRANGEBYSCORE', log_key, '(' .. int(now + inflight - chat_hold), '+inf')
  for _, other in ipairs(held) do
    if other ~= member then return {2, poll, now} end
  end
  if chat_limit > 0 then
    local wait = full(log_key, chat_limit, chat_window)
    if wait > 0 then return {2, wait, now} end
  else
    -- A chat with no window keeps its log for the messages in flight only.
    redis.call('ZREMRANGEBYSCORE', log_key, '-inf', int(now))
  end
  local wait = full(bot_log, bot_limit, bot_window)
  if wait > 0 then return {0, wait, now} end
  redis.call('ZADD', bot_log, int(now + inflight), member)
  redis.call('PEXPIRE', bot_log, int(inflight + bot_window))
  redis.call('ZADD', log_key, int(now + inflight), member)
  redis.call('PEXPIRE', log_key, int(inflight + chat_window))
  return {1, 0, now}
end

local out = {now}
local steps = (#ARGV - 5) / 6
for i = 0, steps - 1 do
  local a = 5 + i * 6
  local op, member = ARGV[a + 1], ARGV[a + 2]
  local spacing, ms = tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  local chat_limit, chat_window = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6])
  local next_key, done_key, log_key = KEYS[2 + i * 3], KEYS[3 + i * 3], KEYS[4 + i * 3]
  local r
  if op == 'a' then
    r = answered(done_key, log_key, member, ms)
  elseif op == 'p' then
    r = push_back(next_key, ms)
  elseif op == 't' then
    r = take(done_key, log_key, member, spacing, chat_limit, chat_window)
  else
    r = reserve(next_key, spacing, ms)
    if op == 'rt' and r[1] == 1 then
      r = take(done_key, log_key, member, spacing, chat_limit, chat_window)
    end
  end
  out[#out + 1] = r[1]
  out[#out + 1] = r[2]
  out[#out + 1] = r[3]
end
return out
