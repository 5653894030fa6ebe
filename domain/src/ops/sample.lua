-- One per-second sample of a stack, run by every api and worker process once a second.
-- Adds this process's counter deltas to the current second's hash (HINCRBY, so any
-- number of processes sum correctly) and records the stack-wide gauges (the same value
-- whoever writes them). Redis' clock names the second, so skewed hosts agree.
--
-- ARGV: prefix, ttl_s, n_queues, then n_queues pairs (label, apalis queue name),
--       then field/delta pairs.
-- Reply: {second, waiting, active, admitted_total, left_total, reaped_total,
--         then per queue: waiting, scheduled, running, dead}

local prefix, ttl, nq = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local sec = tonumber(t[1])
local now_ms = sec * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = prefix .. ':ops:s:' .. sec

local i = 4 + 2 * nq
while i < #ARGV do
  redis.call('HINCRBY', key, ARGV[i], ARGV[i + 1])
  i = i + 2
end

-- apalis-redis keeps its dead tasks in a set, some of its scripts read a sorted set.
local function card(k)
  local kind = redis.call('TYPE', k)['ok']
  if kind == 'set' then return redis.call('SCARD', k) end
  if kind == 'zset' then return redis.call('ZCARD', k) end
  return 0
end

local waiting = redis.call('ZCARD', prefix .. ':wr:waiting')
-- Ended sessions stay in the set until the next admission call prunes them.
local active = redis.call('ZCOUNT', prefix .. ':wr:active', '(' .. now_ms, '+inf')
local stats = redis.call('HMGET', prefix .. ':wr:stats', 'admitted', 'left', 'reaped')
local out = {sec, waiting, active, tonumber(stats[1] or '0'), tonumber(stats[2] or '0'),
  tonumber(stats[3] or '0')}
redis.call('HSET', key, 'waiting', waiting, 'active', active)

for q = 1, nq do
  local label, name = ARGV[2 + 2 * q], ARGV[3 + 2 * q]
  local w = redis.call('LLEN', name .. ':active')
  local s = redis.call('ZCARD', name .. ':scheduled')
  -- Running: the in-flight sets of workers heard from in the last hour (names are
  -- unique per start, so the workers set also remembers long-gone ones).
  local r = 0
  local workers = redis.call('ZRANGEBYSCORE', name .. ':workers', sec - 3600, '+inf', 'LIMIT', 0, 1000)
  for _, worker in ipairs(workers) do r = r + redis.call('SCARD', name .. ':inflight:' .. worker) end
  local d = card(name .. ':dead')
  redis.call('HSET', key, 'q:' .. label .. ':waiting', w, 'q:' .. label .. ':scheduled', s,
    'q:' .. label .. ':running', r)
  table.insert(out, w)
  table.insert(out, s)
  table.insert(out, r)
  table.insert(out, d)
end
redis.call('EXPIRE', key, ttl)
return out
