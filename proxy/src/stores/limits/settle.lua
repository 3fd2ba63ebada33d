-- Settlement of a request's window reservations. KEYS[i]: a window counter (see admit.lua).
-- ARGV, four per key: start of the window the reservation was made in (us), units reserved,
-- units used, window length (us).
-- Same window still running: the reservation becomes what was used. A later window running:
-- what was used counts there. No window running: what was used starts one. Start 0: an
-- admission whose answer never came; its reservation is taken from whichever window runs.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
for i = 1, #KEYS do
  local o = (i - 1) * 4
  local admitted, reserved = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2])
  local actual, window = tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4])
  local h = redis.call('HMGET', KEYS[i], 's', 'c')
  local start, used = tonumber(h[1]), tonumber(h[2])
  local live = start and used and now < start + window
  if live and (start == admitted or admitted == 0) then
    redis.call('HSET', KEYS[i], 'c', string.format('%d', math.max(used - reserved, 0) + actual))
  elseif live then
    if actual > 0 then redis.call('HINCRBY', KEYS[i], 'c', actual) end
  elseif actual > 0 then
    redis.call('HSET', KEYS[i], 's', string.format('%d', now), 'c', string.format('%d', actual))
    redis.call('PEXPIRE', KEYS[i], math.ceil(window / 1000) + 1)
  end
end
return 1
