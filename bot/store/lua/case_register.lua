-- Register a case in one step (bot/usecases/cases.py `CaseService.register`): atomic, so two
-- registrations in one municipality take consecutive numbers and no number is burnt by a retry.
-- KEYS: 1 the external ref, 2 the municipality's reference sequence of the year, 3 the case
--   hash, 4 its versions, 5 its history, 6 the event stream, 7 and 8 the sets of all and of
--   open cases, 9.. the sorted sets that list the case (the municipality's, each party's).
-- ARGV: 1 the case id, 2 the reference without its number ("OSD-2026-"), 3 the by-reference
--   key of that prefix (the key of a reference is the prefix's key and the number), 4 version
--   1's text, 5 the history line as if the reference were the prefix (the number goes before
--   its closing '"}'), 6 when registered (epoch seconds: the sorted sets' score), 7 how many
--   case hash args follow, 8.. the case hash's field/value pairs (not the reference), then the
--   event's field/value pairs.
-- Returns {0, case id} when the external ref is registered already (nothing written), else
-- {1, the reference}. The first write is the INCR: a server out of memory refuses it and the
-- script stops before anything is written.
local existing = redis.call('GET', KEYS[1])
if existing then return {0, existing} end
local id, prefix, history = ARGV[1], ARGV[2], ARGV[5]
-- The one place the number is formatted (the prefix is made in Python).
local number = string.format('%04d', redis.call('INCR', KEYS[2]))
local reference = prefix .. number
local fields = tonumber(ARGV[7])
redis.call('SET', KEYS[1], id)
redis.call('SET', ARGV[3] .. number, id)
redis.call('HSET', KEYS[3], 'reference', reference, unpack(ARGV, 8, 7 + fields))
redis.call('HSET', KEYS[4], '1', ARGV[4])
redis.call('SADD', KEYS[7], id)
redis.call('SADD', KEYS[8], id)
for i = 9, #KEYS do redis.call('ZADD', KEYS[i], ARGV[6], id) end
redis.call('RPUSH', KEYS[5], string.sub(history, 1, -3) .. number .. string.sub(history, -2))
redis.call('XADD', KEYS[6], '*', unpack(ARGV, 8 + fields))
return {1, reference}
