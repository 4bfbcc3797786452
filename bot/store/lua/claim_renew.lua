-- Extend a delivery's claim, only while it is still ours.
-- KEYS[1] the claim; ARGV[1] the token it was taken with; ARGV[2] its new lifetime (ms).
-- Returns 1 when renewed, 0 when the claim has expired or belongs to someone else.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
