-- Timers (bot/store/timers.py): the steps shared by every script that makes or cancels timers.
-- A script using them is this file followed by its own (bot/store/scripts.py `source`).

-- Make timer `id` of `kind` for `case` due at `score` unless a timer of that id exists in any
-- state: its hash `hash` gets due_at (the score), state pending, the payload's field/value
-- pairs ARGV[first .. first + count - 1] (bot/store/timers.py `timer_args`) and kind and case
-- unless the id says them (it is "{kind}:{case}" or begins "{kind}:{case}:", neither holding
-- ':'; `Timer.from_hash` reads them back from it), the due set `zset` gets it at `score`, and
-- its case's index `index` (a hash: the id as a field, valued '') lists it. Returns 1 if made.
local function timer_make(zset, hash, index, id, score, kind, case, first, count)
  if redis.call('EXISTS', hash) == 1 then return 0 end
  redis.call('HSET', hash, 'due_at', score, 'state', 'pending',
    unpack(ARGV, first, first + count - 1))
  local head = kind .. ':' .. case
  if kind:find(':', 1, true) or case:find(':', 1, true)
    or (id ~= head and id:sub(1, #head + 1) ~= head .. ':') then
    redis.call('HSET', hash, 'kind', kind, 'case', case)
  end
  redis.call('ZADD', zset, score, id)
  redis.call('HSET', index, id, '')
  return 1
end

-- Cancel timer `id` (hash `hash`) if it has still to fire (pending, or claimed and not done):
-- it leaves the due set and stays `keep` seconds as a tombstone. Returns 1 if it was pending.
local function timer_cancel(zset, hash, id, now, keep)
  local state = redis.call('HGET', hash, 'state')
  if state ~= 'pending' and state ~= 'claimed' then return 0 end
  redis.call('ZREM', zset, id)
  redis.call('HSET', hash, 'state', 'cancelled', 'done_at', now)
  redis.call('HDEL', hash, 'claim')
  redis.call('EXPIRE', hash, keep)
  return 1
end
