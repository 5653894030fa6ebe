-- Waiting-room state machine. Every change to admission state goes through this
-- one script, so any number of api processes agree (Redis runs it atomically).
-- Time is Redis' own clock, so processes with skewed clocks still agree.
--
-- ARGV: prefix, command, max_active, admit_per_sec, active_ttl_ms, waiting_ttl_ms, arg1, arg2
-- commands: issue(user, new_token_id) | status(token_id) | leave(token_id)
-- reply: {state, token_id, position, estimated_wait_s, active_until_ms, user_id, created}
--   state: 'W' waiting | 'A' active | 'NONE' unknown/expired | 'UNKNOWN_USER' | 'OK'

local prefix, cmd = ARGV[1], ARGV[2]
local max_active, per_sec = tonumber(ARGV[3]), tonumber(ARGV[4])
local active_ttl, waiting_ttl = tonumber(ARGV[5]), tonumber(ARGV[6])
local arg1, arg2 = ARGV[7], ARGV[8]

local K_SEQ = prefix .. ':wr:seq'
local K_WAIT = prefix .. ':wr:waiting'      -- token -> arrival seq (FIFO order)
local K_SEEN = prefix .. ':wr:seen'         -- waiting token -> last poll (ms)
local K_ACTIVE = prefix .. ':wr:active'     -- token -> session end (ms)
local K_ADMITS = prefix .. ':wr:admits'     -- token -> admission time (ms), last second only
local K_USERS = prefix .. ':wr:known_users' -- rebuildable cache of user ids known to PostgreSQL
local K_RATE = prefix .. ':wr:rate_observed' -- observed admission rate, recomputed each second
local function k_tok(id) return prefix .. ':wr:tok:' .. id end
local function k_user(u) return prefix .. ':wr:user:' .. u end
local function k_rate(s) return prefix .. ':wr:rate:' .. s end
local K_STATS = prefix .. ':wr:stats'       -- admitted/left/reaped totals, for /metrics (7-day TTL)

local t = redis.call('TIME')
local sec = tonumber(t[1])
local now = sec * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Counts waiting-room events: a running total, and this second's hash of the ops
-- window (domain::ops::window; 660 s = its WINDOW + margin).
local function count(field, n)
  if n <= 0 then return end
  redis.call('HINCRBY', K_STATS, field, n)
  redis.call('EXPIRE', K_STATS, 604800) -- a week idle: counters restart, Prometheus copes
  local k = prefix .. ':ops:s:' .. sec
  redis.call('HINCRBY', k, field, n)
  redis.call('EXPIRE', k, 660)
end

-- Removes a token from every structure; the user's pointer only if it is still this token.
local function forget(id)
  local user = redis.call('HGET', k_tok(id), 'user')
  redis.call('ZREM', K_WAIT, id)
  redis.call('ZREM', K_SEEN, id)
  redis.call('ZREM', K_ACTIVE, id)
  redis.call('DEL', k_tok(id))
  if user and redis.call('GET', k_user(user)) == id then redis.call('DEL', k_user(user)) end
end

-- Admits the head of the line while a slot and the rate allow. Bounded work per call.
local function advance()
  redis.call('ZREMRANGEBYSCORE', K_ACTIVE, '-inf', now)
  redis.call('ZREMRANGEBYSCORE', K_ADMITS, '-inf', now - 1000)
  local stale = redis.call('ZRANGEBYSCORE', K_SEEN, '-inf', now - waiting_ttl, 'LIMIT', 0, 100)
  for _, id in ipairs(stale) do forget(id) end
  local reaped = #stale
  local free = max_active - redis.call('ZCARD', K_ACTIVE)
  local budget = math.min(free, per_sec - redis.call('ZCARD', K_ADMITS), 500)
  local admitted, scanned = 0, 0
  while budget > 0 and scanned < 1000 do
    local head = redis.call('ZPOPMIN', K_WAIT, 1)
    if #head == 0 then break end
    scanned = scanned + 1
    local id = head[1]
    local seen = tonumber(redis.call('ZSCORE', K_SEEN, id) or '0')
    redis.call('ZREM', K_SEEN, id)
    if seen <= now - waiting_ttl or redis.call('EXISTS', k_tok(id)) == 0 then
      forget(id) -- dropped out: never spend a slot on an abandoned token
      reaped = reaped + 1
    else
      local until_ms = now + active_ttl
      redis.call('HSET', k_tok(id), 'status', 'A', 'until', until_ms)
      redis.call('PEXPIRE', k_tok(id), active_ttl)
      redis.call('PEXPIRE', k_user(redis.call('HGET', k_tok(id), 'user')), active_ttl)
      redis.call('ZADD', K_ACTIVE, until_ms, id)
      redis.call('ZADD', K_ADMITS, now, id)
      admitted = admitted + 1
      budget = budget - 1
    end
  end
  count('reaped', reaped)
  count('admitted', admitted)
  if admitted > 0 then
    redis.call('INCRBY', k_rate(sec), admitted)
    redis.call('EXPIRE', k_rate(sec), 120)
  end
end

-- Admissions per second observed over the last minute, or nil with too little data.
-- Summing 60 per-second counters is most of a poll's cost, so the result is
-- kept for a second ('-' = too little data): an estimate needs no more.
local function observed_rate()
  local cached = redis.call('GET', K_RATE)
  if cached then return tonumber(cached) end
  local keys = {}
  for i = 0, 59 do keys[i + 1] = k_rate(sec - i) end
  local total, span = 0, 0
  for i, v in ipairs(redis.call('MGET', unpack(keys))) do
    if v then
      total = total + tonumber(v)
      span = i
    end
  end
  local rate = nil
  if total >= 5 then
    -- The current second is partial: count it as elapsed milliseconds.
    local elapsed = (span - 1) + (now % 1000) / 1000
    if elapsed < 1 then elapsed = 1 end
    rate = total / elapsed
  end
  redis.call('SET', K_RATE, rate and tostring(rate) or '-', 'PX', 1000)
  return rate
end

local function describe(id, created)
  local h = redis.call('HMGET', k_tok(id), 'status', 'until', 'user')
  if h[1] == 'A' then
    if tonumber(h[2]) <= now then forget(id) return {'NONE'} end
    return {'A', id, 0, 0, tonumber(h[2]), h[3], created}
  end
  local rank = redis.call('ZRANK', K_WAIT, id)
  if not rank or not h[1] then return {'NONE'} end
  local position = rank + 1
  local rate = observed_rate() or per_sec
  if rate > per_sec then rate = per_sec end
  return {'W', id, position, math.ceil(position / rate), 0, h[3], created}
end

-- The token's status ('A' or 'W') while it is live, else nil.
local function live(id)
  local h = redis.call('HMGET', k_tok(id), 'status', 'until')
  if h[1] == 'A' and tonumber(h[2]) > now then return 'A' end
  if h[1] == 'W' and redis.call('ZSCORE', K_WAIT, id) then return 'W' end
  return nil
end

local function touch_waiting(id)
  redis.call('ZADD', K_SEEN, 'XX', now, id)
  redis.call('PEXPIRE', k_tok(id), waiting_ttl)
  redis.call('PEXPIRE', k_user(redis.call('HGET', k_tok(id), 'user')), waiting_ttl)
end

if cmd == 'issue' then
  local user, new_id = arg1, arg2
  if redis.call('SISMEMBER', K_USERS, user) == 0 then return {'UNKNOWN_USER'} end
  local existing = redis.call('GET', k_user(user))
  local existing_status = existing and live(existing)
  if existing_status then
    if existing_status == 'W' then touch_waiting(existing) end
    advance()
    return describe(existing, 0)
  end
  if existing then forget(existing) end
  local seq = redis.call('INCR', K_SEQ)
  redis.call('HSET', k_tok(new_id), 'user', user, 'status', 'W')
  redis.call('PEXPIRE', k_tok(new_id), waiting_ttl)
  redis.call('SET', k_user(user), new_id, 'PX', waiting_ttl)
  redis.call('ZADD', K_WAIT, seq, new_id)
  redis.call('ZADD', K_SEEN, now, new_id)
  advance()
  return describe(new_id, 1)
elseif cmd == 'status' then
  local id = arg1
  local status = live(id)
  if not status then forget(id) advance() return {'NONE'} end
  if status == 'W' then touch_waiting(id) end
  advance()
  return describe(id, 0)
elseif cmd == 'leave' then
  if live(arg1) then count('left', 1) end
  forget(arg1)
  advance()
  return {'OK'}
end
return redis.error_reply('unknown waiting-room command ' .. tostring(cmd))
