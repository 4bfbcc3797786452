-- How many entries of a stream come after an id, counted in Redis (no entry leaves the server).
-- KEYS[1]: the stream; ARGV[1]: the id (exclusive); ARGV[2]: count at most this many.
local n = 0
local cap = tonumber(ARGV[2])
local start = '(' .. ARGV[1]
while n < cap do
  local page = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', math.min(1000, cap - n))
  n = n + #page
  if #page < 1000 then break end
  start = '(' .. page[#page][1]
end
return n
