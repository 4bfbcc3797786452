-- Once-only (bot/pipeline/deadlines.py): mark an escalation digest sent and queue its notice,
-- or do nothing. KEYS: the digest hash, events stream. ARGV: when, then the event's flat fields.
if redis.call('HSETNX', KEYS[1], 'sent', ARGV[1]) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
return 1
