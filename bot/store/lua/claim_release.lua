-- Give up a delivery's claim, only if it is still ours: a claim that expired meanwhile may
-- have been taken by another worker, whose claim must stay.
-- KEYS[1] the claim; ARGV[1] the token it was taken with. Returns 1 when deleted.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
