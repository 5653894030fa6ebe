-- One request of one client address against its sliding one-minute log.
-- KEYS[1]: the log, a sorted set of admission times (µs, Redis' clock).
-- ARGV: limit, window_us, member (unique per request).
-- Reply: 0 when admitted (and logged); otherwise the µs until the entry that
-- holds the limit leaves the window (always ≥ 1). A refusal writes nothing.
local limit, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local n = redis.call('ZCARD', KEYS[1])
if n < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  return 0
end
-- More entries than the limit only if it was lowered: the place frees when
-- enough of the oldest have left for the count to fall below it.
local holder = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
return math.floor(tonumber(holder[2]) + window - now)
