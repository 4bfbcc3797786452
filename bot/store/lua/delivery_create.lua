-- Create a delivery record, index it under its case and queue its send, only if it does not
-- exist yet (bot/pipeline/fanout.py). KEYS: delivery, case deliveries, outbox.
-- ARGV: delivery id, then the record's field/value pairs. Returns 1 if created, else 0.
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[3], '*', 'delivery', ARGV[1])
return 1
