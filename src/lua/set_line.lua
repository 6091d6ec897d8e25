-- set_line.lua: cartd_set_line sets (or adds to) one cart line and holds exactly the
-- difference in stock, all or nothing. It creates the cart's session when asked to.
--
-- KEYS: none (computed: s:{sid}, c:{sid}, st:{inv}, h:{inv} of the line's old and new
--       inventory rows and of every other line, whose hold deadlines slide with the cart)
-- ARGV[1]  session id from the request, or "" when there is none
-- ARGV[2]  id for a new session if ARGV[1] is not a live cart, or "" to refuse (-> no_cart)
-- ARGV[3]  product_id
-- ARGV[4]  inventory_id (ignored when the new quantity is 0)
-- ARGV[5]  quantity, >= 0; with "set", 0 removes the line
-- ARGV[6]  "set" (line := quantity) or "add" (line := line + quantity)
-- ARGV[7]  cart TTL in ms (sliding: every change restarts it)
-- ARGV[8]  maximum cart lifetime in ms (caps the sliding deadline)
-- ARGV[9]  maximum lines per cart
-- ARGV[10] maximum quantity per line
-- ARGV[11] "view" to have the whole cart in the answer (the /v1 routes), else ""
-- Returns one of
--   {'ok', sid, created (0|1), deadline_ms, line_quantity, dropped[, cart_view]}
--   {'insufficient', available, dropped}  {'unknown_inventory'}
--   {'product_mismatch', product_id}   {'too_many_lines', max}
--   {'quantity_limit', max}            {'no_cart', 'expired' | 'unknown'}
--   {'checkout_in_progress'}
-- Nothing is written unless the answer is 'ok' (dropping expired holds aside, which
-- changes no availability). dropped: the units of expired holds this call dropped from
-- the line's stock row (logical expiry; counted by the metrics).
local function set_line(keys, args)
  local now = now_ms()
  local sid, pid, inv = args[1], args[3], args[4]
  local qty, mode = tonumber(args[5]), args[6]
  local ttl, max_life = tonumber(args[7]), tonumber(args[8])
  local max_lines, max_qty = tonumber(args[9]), tonumber(args[10])

  local born = sid ~= '' and redis.call('GET', session_key(sid))
  local created = not born
  if created then
    if args[2] == '' then return {'no_cart', missing_cart(sid)} end
    sid, born = args[2], now
  else
    born = tonumber(born)
  end

  if redis.call('EXISTS', checkout_key(sid)) == 1 then return {'checkout_in_progress'} end
  local ck = cart_key(sid)
  local old = redis.call('HGET', ck, pid)
  local old_inv, old_qty = nil, 0
  if old then old_inv, old_qty = parse_line(old) end
  if mode == 'add' then qty = qty + old_qty end
  if qty > max_qty then return {'quantity_limit', max_qty} end

  local dropped = 0
  if qty > 0 then
    local row = redis.call('HMGET', stock_key(inv), 'p', 'oh', 'r')
    if not row[1] then return {'unknown_inventory'} end
    if row[1] ~= pid then return {'product_mismatch', row[1]} end
    if not old and redis.call('HLEN', ck) >= max_lines then return {'too_many_lines', max_lines} end
    dropped = drop_expired(inv, now)
    local reserved = tonumber(row[3] or 0) - dropped
    local available = tonumber(row[2]) - reserved
    local own = 0
    if old_inv == inv and redis.call('ZSCORE', holds_key(inv), hold_member(sid, old_qty)) then
      own = old_qty
    end
    if qty - own > available then return {'insufficient', math.max(available, 0), dropped} end
  end

  -- Move the hold; reserved changes once per row, by the net difference.
  local deadline = math.min(now + ttl, born + max_life)
  local delta = {}
  if old and redis.call('ZREM', holds_key(old_inv), hold_member(sid, old_qty)) == 1 then
    delta[old_inv] = -old_qty
  end
  if qty > 0 then
    redis.call('ZADD', holds_key(inv), deadline, hold_member(sid, qty))
    delta[inv] = (delta[inv] or 0) + qty
    redis.call('HSET', ck, pid, inv .. ' ' .. qty)
  elseif old then
    redis.call('HDEL', ck, pid)
  end
  for row, change in pairs(delta) do
    if change ~= 0 then adjust_reserved(row, change) end
  end

  -- Every change restarts the cart's TTL, and its holds' deadlines move with it.
  local lines = redis.call('HGETALL', ck)
  for i = 1, #lines, 2 do
    if lines[i] ~= pid then
      local line_inv, line_qty = parse_line(lines[i + 1])
      redis.call('ZADD', holds_key(line_inv), 'XX', deadline, hold_member(sid, line_qty))
    end
  end
  if created then
    redis.call('SET', session_key(sid), born, 'PXAT', deadline)
  else
    redis.call('PEXPIREAT', session_key(sid), deadline)
  end
  redis.call('ZADD', DEADLINES, deadline, sid)
  local reply = {'ok', sid, created and 1 or 0, deadline, qty, dropped}
  if args[11] == 'view' then table.insert(reply, cart_view(sid)) end
  return reply
end

redis.register_function('cartd_set_line', set_line)
