-- Admission of one request against all of its limits, atomically (one round trip).
-- KEYS[i]: the counter of check i. ARGV, four per check: kind, a, b, cost.
--   kind 'r' (GCRA): a = emission interval (us), b = tolerance (us); the key holds the
--     theoretical arrival time (us, Redis time).
--   kind 'w' (window): a = limit, b = window (us), cost = units reserved; the key is a hash:
--     s = window start (us), c = units committed (used + reserved).
-- Returns {0, i, retry_us} when check i refuses (nothing is changed: all or nothing), else
-- {1, remaining_1, reset_us_1, start_1, remaining_2, ...}.
-- Every redis.call costs ~1 us beyond its command: a running window takes one HINCRBY, only
-- a new one is written whole (HSET and PEXPIRE).
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local n = #KEYS
local value, start = {}, {}
for i = 1, n do
  local o = i * 4 - 3
  local b = tonumber(ARGV[o + 2])
  if ARGV[o] == 'r' then
    local tat = tonumber(redis.call('GET', KEYS[i])) or now
    if tat < now then tat = now end
    if tat - now > b then return {0, i, tat - now - b} end
    value[i] = tat + tonumber(ARGV[o + 1])
  else
    local a = tonumber(ARGV[o + 1])
    local h = redis.call('HMGET', KEYS[i], 's', 'c')
    local s, used = tonumber(h[1]), tonumber(h[2])
    if s and used and now < s + b then
      if used >= a then return {0, i, s + b - now} end
      start[i] = s
    else
      used = 0
    end
    value[i] = used + tonumber(ARGV[o + 3])
  end
end
local out = {1}
for i = 1, n do
  local o = i * 4 - 3
  local a, b = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2])
  local v = value[i]
  if ARGV[o] == 'r' then
    redis.call('SET', KEYS[i], string.format('%d', v), 'PX', math.ceil((v - now) / 1000) + 1)
    out[#out + 1] = math.floor(math.max(b + a - (v - now), 0) / a)
    out[#out + 1] = v - now
    out[#out + 1] = 0
  else
    local s = start[i]
    if s then
      redis.call('HINCRBY', KEYS[i], 'c', ARGV[o + 3])
    else
      s = now
      redis.call('HSET', KEYS[i], 's', string.format('%d', now), 'c', string.format('%d', v))
      redis.call('PEXPIRE', KEYS[i], math.ceil(b / 1000) + 1)
    end
    out[#out + 1] = math.max(a - v, 0)
    out[#out + 1] = s + b - now
    out[#out + 1] = s
  end
end
return out
