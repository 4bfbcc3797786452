-- Timers (bot/store/timers.py): the steps shared by every script that makes, claims, completes
-- or cancels timers. A script using them is this file followed by its own
-- (bot/store/scripts.py `source`).
--
-- A timer is where bot/store/timers.py `timer_args` / `timer_keys` say: mostly a field of its
-- case's index `index` (a hash), the id as the field and the timer packed as the value (`pack`
-- in bot/store/timers.py: a state code and the attempts, '|', the due time, '|', the payload,
-- which no script reads); or a hash of its own `hash` (state, attempts, due_at, …), listed in
-- `index` with the value '' (the older layout, or a timer whose id does not say its case).

-- The state codes of a packed timer (bot/store/timers.py `STATE_CODES`).
local TIMER_CODE = {pending = 'p', claimed = 'c', fired = 'f', cancelled = 'x', failed = 'e'}
local TIMER_STATE = {}
for state, code in pairs(TIMER_CODE) do TIMER_STATE[code] = state end

-- Where timer `id` is: true when it has a hash of its own, its packed value when it is a field
-- of its case's index, nil when there is no such timer (never made, or its tombstone expired).
local function timer_find(hash, index, id)
  if redis.call('EXISTS', hash) == 1 then return true end
  local packed = redis.call('HGET', index, id)
  if packed and packed ~= '' then return packed end
  return nil
end

-- A packed timer's state code, attempts and the rest (due time and payload, kept as they are).
local function timer_unpack(packed)
  local code, attempts, rest = string.match(packed, '^(%a)(%d+)|(.*)$')
  return code, tonumber(attempts), rest
end

local function timer_pack(code, attempts, rest)
  return code .. string.format('%d', attempts) .. '|' .. rest
end

-- Make timer `id` due at `score` unless a timer of that id exists in any state: the packed
-- value `packed` becomes its field in its case's index `index`, or, when `packed` is '', its
-- hash `hash` gets the field/value pairs ARGV[first .. first + count - 1] and `index` lists it
-- with the value ''; the due set `zset` gets it at `score`. Returns 1 if made.
local function timer_make(zset, hash, index, id, score, packed, first, count)
  if timer_find(hash, index, id) then return 0 end
  if packed ~= '' then
    redis.call('HSET', index, id, packed)
  else
    redis.call('HSET', hash, unpack(ARGV, first, first + count - 1))
    redis.call('HSET', index, id, '')
  end
  redis.call('ZADD', zset, score, id)
  return 1
end

-- Claim timer `id` if it is due by `now` (a score) and has still to fire: its score moves to
-- `lease` (no one else sees it due meanwhile) and its attempts go up by one. Returns the
-- attempts, which the claim's holder completes it with, or 0.
local function timer_claim(zset, hash, index, id, now, lease)
  local score = redis.call('ZSCORE', zset, id)
  if not score or tonumber(score) > tonumber(now) then return 0 end
  local found = timer_find(hash, index, id)
  if found == true then
    local state = redis.call('HGET', hash, 'state')
    if state == 'pending' or state == 'claimed' then
      redis.call('ZADD', zset, lease, id)
      redis.call('HSET', hash, 'state', 'claimed')
      return redis.call('HINCRBY', hash, 'attempts', 1)
    end
  elseif found then
    local code, attempts, rest = timer_unpack(found)
    if code == 'p' or code == 'c' then
      redis.call('ZADD', zset, lease, id)
      redis.call('HSET', index, id, timer_pack('c', attempts + 1, rest))
      return attempts + 1
    end
  end
  redis.call('ZREM', zset, id)  -- done, cancelled or gone: not due any more
  return 0
end

-- End timer `id` as `state` (fired, failed or cancelled) if `may(state it is in, attempts)`
-- says it may end: it leaves the due set and is kept as a tombstone (in its case's index, or a
-- hash of its own kept `keep` seconds, without its claim); with `keep` 0 it is forgotten whole
-- instead (hash and index field: a kind whose handler is idempotent without it, a digest's).
-- Returns 1 if ended.
local function timer_end(zset, hash, index, id, state, now, keep, may)
  local found = timer_find(hash, index, id)
  local forget = tonumber(keep) == 0
  if found == true then
    local held = redis.call('HMGET', hash, 'state', 'attempts')
    if not may(held[1], tonumber(held[2])) then return 0 end
    if forget then
      redis.call('DEL', hash)
      redis.call('HDEL', index, id)
    else
      redis.call('HSET', hash, 'state', state, 'done_at', now)
      redis.call('HDEL', hash, 'claim')
      redis.call('EXPIRE', hash, keep)
    end
  elseif found then
    local code, attempts, rest = timer_unpack(found)
    if not may(TIMER_STATE[code], attempts) then return 0 end
    if forget then
      redis.call('HDEL', index, id)
    else
      redis.call('HSET', index, id, timer_pack(TIMER_CODE[state], attempts, rest))
    end
  else
    return 0
  end
  redis.call('ZREM', zset, id)
  return 1
end

-- Record claimed timer `id` as done (`state`: fired or failed) if `attempts` is still its
-- attempts (the claim's holder's: a later claim has more). Returns 1 if done.
local function timer_complete(zset, hash, index, id, attempts, state, now, keep)
  return timer_end(zset, hash, index, id, state, now, keep, function(held, count)
    return held == 'claimed' and count == tonumber(attempts)
  end)
end

-- Cancel timer `id` if it has still to fire (pending, or claimed and not done). Returns 1 if it
-- was pending.
local function timer_cancel(zset, hash, index, id, now, keep)
  return timer_end(zset, hash, index, id, 'cancelled', now, keep, function(held)
    return held == 'pending' or held == 'claimed'
  end)
end
