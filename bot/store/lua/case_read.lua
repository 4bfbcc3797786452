-- Read a case in one round trip (bot/store/cases.py `read_case`): its hash and the current
-- version's snapshot, whose facts are the case's (the hash keeps only short values: see
-- bot/domain/case.py `Case`), and, if asked, another version's snapshot.
-- KEYS: 1 the case hash, 2 its versions hash.
-- ARGV: 1 (optional) the number of a version to read too.
-- Returns {the hash's field/value pairs (none: no case), the current version's text or nil
-- (also when the hash holds the facts itself, as a case stored before does), the asked
-- version's text or nil}.
local flat = redis.call('HGETALL', KEYS[1])
local version, held = nil, false
for i = 1, #flat, 2 do
  if flat[i] == 'version' then version = flat[i + 1] elseif flat[i] == 'facts' then held = true end
end
local current = false
if version and not held then current = redis.call('HGET', KEYS[2], version) end
local asked = false
if version and ARGV[1] then
  if ARGV[1] == version and not held then asked = current
  else asked = redis.call('HGET', KEYS[2], ARGV[1]) end
end
return {flat, current, asked}
