-- Once-only (bot/pipeline/deadlines.py): record the marker, append the history line and queue the
-- notices, or do nothing. KEYS: case markers, case history, events stream.
-- ARGV: marker field, marker value, history line, JSON list of each event's flat field list.
if redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[3])
for _, fields in ipairs(cjson.decode(ARGV[4])) do
  redis.call('XADD', KEYS[3], '*', unpack(fields))
end
return 1
