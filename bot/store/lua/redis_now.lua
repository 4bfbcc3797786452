-- Prelude of the Telegram limiter's scripts: `now` in ms of Redis's own clock, and `int`.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function int(x) return string.format('%.0f', x) end
