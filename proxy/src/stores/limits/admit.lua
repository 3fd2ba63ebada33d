-- Admission of one request against all of its limits, atomically (one round trip).
-- KEYS[i]: the counter of check i. ARGV, four per check: kind, a, b, cost.
--   kind 'r' (GCRA): a = emission interval (us), b = tolerance (us); the key holds the
--     theoretical arrival time (us, Redis time).
--   kind 'w' (window): a = limit, b = window (us), cost = units reserved; the key is a hash:
--     s = window start (us), c = units committed (used + reserved).
-- Returns {0, i, retry_us} when check i refuses (nothing is changed: all or nothing), else
-- {1, remaining_1, reset_us_1, start_1, remaining_2, ...}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local plan = {}
for i = 1, n do
  local o = (i - 1) * 4
  local kind, a, b = ARGV[o + 1], tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3])
  if kind == 'r' then
    local tat = tonumber(redis.call('GET', KEYS[i]) or now) or now
    if tat < now then tat = now end
    if tat - now > b then return {0, i, tat - now - b} end
    plan[i] = tat + a
  else
    local cost = tonumber(ARGV[o + 4])
    local h = redis.call('HMGET', KEYS[i], 's', 'c')
    local start, used = tonumber(h[1]), tonumber(h[2])
    if not start or not used or now >= start + b then start, used = now, 0 end
    if used >= a then return {0, i, start + b - now} end
    plan[i] = {start, used + cost}
  end
end
local out = {1}
for i = 1, n do
  local o = (i - 1) * 4
  local kind, a, b = ARGV[o + 1], tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3])
  if kind == 'r' then
    local tat = plan[i]
    redis.call('SET', KEYS[i], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000) + 1)
    out[#out + 1] = math.floor(math.max(b + a - (tat - now), 0) / a)
    out[#out + 1] = tat - now
    out[#out + 1] = 0
  else
    local start, used = plan[i][1], plan[i][2]
    redis.call('HSET', KEYS[i], 's', string.format('%d', start), 'c', string.format('%d', used))
    redis.call('PEXPIRE', KEYS[i], math.ceil((start + b - now) / 1000) + 1)
    out[#out + 1] = math.max(a - used, 0)
    out[#out + 1] = start + b - now
    out[#out + 1] = start
  end
end
return out
