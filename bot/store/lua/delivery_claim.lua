-- Take a delivery's claim and read what the deliverer needs, in one step (bot/store/deliveries.py
-- `claim`): the reads run after the SET, so when the claim is ours the status they show cannot
-- change under us. One command where it was five in the batch (issue 17).
-- KEYS: the claim, the case's delivery index, the delivery's own hash (older layout), and
-- optionally the case's hash and its versions.
-- ARGV: the claim's token, its lifetime (ms), the delivery's id without "{case}:", the index's
-- shared field, and (with the case's keys) the version to read.
-- Returns {1 or 0 (claimed), packed record or false, shared part or false, own hash as
-- field/value pairs, and with the case's keys: the case's hash as pairs, the version's text
-- or false}.
local claimed = 0
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  claimed = 1
end
local got = redis.call('HMGET', KEYS[2], ARGV[3], ARGV[4])
local reply = {claimed, got[1], got[2], redis.call('HGETALL', KEYS[3])}
if #KEYS > 3 then
  reply[5] = redis.call('HGETALL', KEYS[4])
  reply[6] = redis.call('HGET', KEYS[5], ARGV[5])
end
return reply
