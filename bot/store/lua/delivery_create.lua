-- Create a delivery record, index it under its case and queue its send, only if it does not
-- exist yet (bot/pipeline/fanout.py). KEYS: delivery, the case's delivery ids, outbox.
-- ARGV: delivery id, the length of its "{case}:" prefix, then the record's field/value pairs.
-- Returns 1 if created, else 0.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
-- The index holds the id without its case's prefix (the key names the case): shorter fields
-- keep the hash a listpack (bot/store/keys.py case_delivery_ids).
redis.call('HSET', KEYS[2], string.sub(ARGV[1], tonumber(ARGV[2]) + 1), '')
redis.call('XADD', KEYS[3], '*', 'delivery', ARGV[1])
return 1
