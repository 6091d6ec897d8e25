-- set_line.lua: cartd_set_line sets (or adds to) one cart line and holds exactly the
-- difference in stock, all or nothing. It creates the cart when asked to.
--
-- KEYS[1]  the cart ({c<n>}:<sid>)
-- KEYS[2]  the stock row of ARGV[4] (absent when the new quantity is 0)
--          (computed: the rows of the cart's other lines, whose holds move with the
--          cart's deadline, and of the line's old row)
-- ARGV[1]  session id (of KEYS[1])
-- ARGV[2]  "1": create the cart if it is not live; "0": refuse (-> no_cart)
-- ARGV[3]  product_id
-- ARGV[4]  inventory_id (ignored when the new quantity is 0)
-- ARGV[5]  quantity, >= 0; with "set", 0 removes the line
-- ARGV[6]  "set" (line := quantity) or "add" (line := line + quantity)
-- ARGV[7]  cart TTL in ms (sliding: every change restarts it)
-- ARGV[8]  maximum cart lifetime in ms (caps the sliding deadline)
-- ARGV[9]  maximum lines per cart
-- ARGV[10] maximum quantity per line
-- ARGV[11] "view" to have the whole cart in the answer (the /v1 routes), else ""
-- ARGV[12] the deadline quantum in ms (deadlines are rounded up to a multiple of it)
-- Returns one of
--   {'ok', sid, created (0|1), deadline_ms, line_quantity, dropped[, cart_view]}
--   {'insufficient', available, dropped}  {'unknown_inventory'}
--   {'product_mismatch', product_id}   {'too_many_lines', max}
--   {'quantity_limit', max}            {'no_cart', 'expired' | 'unknown' | 'checked_out'}
--   {'limit_exceeded', max_per_cart}   (the row's own per-cart limit)
--   {'checkout_in_progress'}
-- Nothing is written unless the answer is 'ok' (dropping expired buckets aside, which
-- changes no availability). dropped: the units of expired buckets this call dropped
-- from the line's stock row (logical expiry; counted by the metrics).
-- 'insufficient' says too whether the row has a waitlist (1 or 0): carts waiting on it
-- may hold offers, which only Redis knows.
--
-- Claiming an offer: a cart offered units of the row (see pour in holds.lua) counts
-- them as available to itself; the change that uses them takes them out of the offer's
-- bucket into the line's, so no one else ever sees them, and whatever it leaves goes to
-- the next in line.
local function set_line(keys, args)
  local now = now_ms()
  local ck = keys[1]
  local sid, pid, inv = args[1], args[3], args[4]
  local qty, mode = tonumber(args[5]), args[6]
  local ttl, max_life = tonumber(args[7]), tonumber(args[8])
  local max_lines, max_qty = tonumber(args[9]), tonumber(args[10])

  local old_deadline = live_deadline(ck, now)
  local cart = {false, false, false}
  if old_deadline then cart = redis.call('HMGET', ck, BIRTH, CHECKING_OUT, pid) end
  local created = not old_deadline
  local born
  if created then
    if args[2] ~= '1' then return {'no_cart', missing_cart(sid)} end
    born = now
  else
    born = tonumber(cart[1])
  end
  if cart[2] then return {'checkout_in_progress'} end
  local old = cart[3]
  local old_inv, old_qty = nil, 0
  if old then old_inv, old_qty = parse_line(old) end
  if mode == 'add' then qty = qty + old_qty end
  if qty > max_qty then return {'quantity_limit', max_qty} end

  local dropped, e = 0, false
  local claim = nil  -- {quantity, deadline} of this cart's offer on the row
  if qty > 0 then
    local row = redis.call('HMGET', keys[2], 'p', 'oh', 'r', 'e', 'mx', 'wv')
    if not row[1] then return {'unknown_inventory'} end
    if row[1] ~= pid then return {'product_mismatch', row[1]} end
    -- Above the row's per-cart limit only by lowering (a limit set after the line was).
    if row[5] and qty > tonumber(row[5]) and not (old_inv == inv and qty <= old_qty) then
      return {'limit_exceeded', tonumber(row[5])}
    end
    -- Lines are the fields besides the birth time (and the waitlist marks, counted
    -- only when the cheap count says the cart may be full).
    if not old and not created and redis.call('HLEN', ck) - 1 >= max_lines and
        #cart_lines(redis.call('HGETALL', ck)) >= max_lines then
      return {'too_many_lines', max_lines}
    end
    local rewrote, offered
    dropped, rewrote, offered = drop_expired(inv, now, row[4])
    e = not rewrote and row[4]  -- false: add_hold reads it again
    local reserved = tonumber(row[3] or 0) - dropped + offered
    local available = tonumber(row[2]) - reserved
    local own = old_inv == inv and old_qty or 0
    -- Only a change that takes more units of the row claims the cart's offer on it; one
    -- that keeps or lowers the line leaves the offer as it is.
    local refused
    claim, refused = claim_or_refuse(inv, sid, now, row[6] and not created and qty > own,
                                     qty - own, available, dropped)
    if refused then return refused end
  end

  -- Every change restarts the cart's TTL (capped by its lifetime); the holds of its
  -- other lines move with the deadline, unless it rounds to the same one.
  local deadline = math.min(round_up(now + ttl, tonumber(args[12])), born + max_life)
  -- The deadline never moves back. A checkout's grace can keep a cart past its lifetime
  -- cap (or a TTL shortened since): after that checkout is aborted, the capped deadline
  -- can be earlier than the cart's, even in the past. Moving back would put the holds in
  -- a bucket below the row's e (move_hold keeps e only for later deadlines), so they
  -- would outlive their cart, and PEXPIREAT in the past would delete the cart that this
  -- call answers 'ok' for.
  if not created and deadline < old_deadline then deadline = old_deadline end
  if not created and deadline ~= old_deadline then
    for _, l in ipairs(cart_lines(redis.call('HGETALL', ck))) do
      if l[1] ~= pid then move_hold(l[2], old_deadline, deadline, l[3]) end
    end
  end
  -- A claimed offer's units leave its bucket; the line's hold below takes what it needs
  -- and pour gives the rest to the next in line.
  if claim then
    add_hold(inv, claim[2], -claim[1])
    redis.call('HDEL', offers_key(inv), sid)
    redis.call('HDEL', ck, WAITS .. inv)
    redis.call('HINCRBY', keys[2], 'wv', 1)
  end
  -- The line's own hold: one change per row, by the net difference.
  if old and old_inv == inv and qty > 0 then
    if old_deadline ~= deadline then move_hold(inv, old_deadline, deadline, old_qty) end
    if qty ~= old_qty then add_hold(inv, deadline, qty - old_qty, e) end
  else
    if old then add_hold(old_inv, old_deadline, -old_qty) end
    if qty > 0 then add_hold(inv, deadline, qty, e) end
  end
  if qty > 0 then
    if created then
      redis.call('HSET', ck, BIRTH, born, pid, inv .. ' ' .. qty)
    else
      redis.call('HSET', ck, pid, inv .. ' ' .. qty)
    end
  elseif old then
    redis.call('HDEL', ck, pid)
  elseif created then
    redis.call('HSET', ck, BIRTH, born)
  end
  if created or deadline ~= old_deadline then redis.call('PEXPIREAT', ck, deadline) end
  -- Units this change gave back go to carts waiting on their row first.
  if old and (old_inv ~= inv or qty < old_qty) then pour(old_inv, now) end
  if claim then pour(inv, now) end
  local reply = {'ok', sid, created and 1 or 0, deadline, qty, dropped}
  if args[11] == 'view' then table.insert(reply, cart_view(ck, now)) end
  return reply
end

redis.register_function('cartd_set_line', set_line)
