-- checkout.lua: the Redis half of a checkout. A checkout is three steps, each safe to
-- repeat, so that a crash at any point leaves either one order or a live cart:
--   1. cartd_checkout_begin freezes the cart: it records the lines and the idempotency
--      key in co:{sid}, and keeps the units held for a grace period;
--   2. cartd (not Redis) writes the order to the main DB, idempotently per cart;
--   3. cartd_checkout_finish turns the holds into sold units: it drops the holds, lowers
--      the on-hand mirror, deletes the cart and records ck:{sid}.
-- A checkout left between 1 and 3 (cartd died) is settled by recovery: with an order in
-- the DB it is finished, without one it is aborted (the cart lives on).

-- cartd_checkout_begin
-- ARGV[1] session id  ARGV[2] idempotency key  ARGV[3] grace in ms (holds kept at least so long)
-- Returns one of
--   {'begun', lines_json}     {'resume', lines_json}   (same key, checkout in progress)
--   {'done', order_id}        (this key already made an order)
--   {'conflict', order_id}    (another key already made one; order_id may be '')
--   {'expired'} {'unknown'} {'empty'}
-- lines_json: [{product_id, inventory_id, name, quantity, unit_price_cents}]
local function checkout_begin(keys, args)
  local sid, key, grace = args[1], args[2], tonumber(args[3])
  local done = redis.call('GET', done_key(sid))
  if done then
    local done_key_value, order_id = string.match(done, '^(.*) (%S+)$')
    if done_key_value == key then return {'done', order_id} end
    return {'conflict', order_id}
  end
  local co = redis.call('HMGET', checkout_key(sid), 'key', 'lines')
  if co[1] then
    if co[1] ~= key then return {'conflict', ''} end
    return {'resume', co[2]}
  end
  local view = cart_view(sid)
  if not view then return {missing_cart(sid)} end
  if #view == 1 then return {'empty'} end

  local now = now_ms()
  local deadline = now + grace
  local lines = {}
  for i = 2, #view, 5 do
    local pid, inv, qty = view[i], view[i + 1], view[i + 2]
    table.insert(lines, {product_id = pid, inventory_id = inv, quantity = qty,
                         name = view[i + 3], unit_price_cents = view[i + 4]})
    redis.call('ZADD', holds_key(inv), 'XX', 'GT', deadline, hold_member(sid, qty))
  end
  redis.call('PEXPIREAT', session_key(sid), deadline, 'GT')
  redis.call('ZADD', DEADLINES, 'GT', deadline, sid)
  local json = cjson.encode(lines)
  redis.call('HSET', checkout_key(sid), 'key', key, 'lines', json, 'started', now)
  redis.call('ZADD', CHECKOUTS, now, sid)
  return {'begun', json}
end

-- cartd_checkout_finish: the order is in the main DB; make Redis agree. Works whether
-- or not the checkout marker is still there (recovery may settle a cart that expired).
-- ARGV[1] session id  ARGV[2] idempotency key  ARGV[3] order id
-- ARGV[4] JSON [{inventory_id, quantity, on_hand}]: the order's lines, with each row's
--         on_hand in the main DB after the order (the mirror takes absolute values)
-- Returns {'finished'}, or {'done'} when it had finished already.
local function checkout_finish(keys, args)
  local sid, key, order_id = args[1], args[2], args[3]
  if redis.call('EXISTS', done_key(sid)) == 1 then return {'done'} end
  local lines = {}
  for _, l in ipairs(cjson.decode(args[4])) do
    unhold(l.inventory_id, sid, l.quantity)
    redis.call('HSET', stock_key(l.inventory_id), 'oh', l.on_hand)
    redis.call('SADD', DIRTY, l.inventory_id)
    table.insert(lines, {inventory_id = l.inventory_id, quantity = l.quantity})
  end
  redis.call('DEL', cart_key(sid), session_key(sid), checkout_key(sid))
  redis.call('ZREM', DEADLINES, sid)
  redis.call('ZREM', CHECKOUTS, sid)
  redis.call('SET', done_key(sid), key .. ' ' .. order_id, 'PX', DONE_TTL_MS)
  redis.call('XADD', EVENTS, 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'type', 'checked_out', 'cart', sid,
             'lines', cjson.encode(lines), 'order', order_id)
  return {'finished'}
end

-- cartd_checkout_abort: gives up a checkout that made no order; the cart lives on.
-- ARGV[1] session id  ARGV[2] idempotency key.  Returns 1 if there was such a checkout.
local function checkout_abort(keys, args)
  local sid = args[1]
  if redis.call('HGET', checkout_key(sid), 'key') ~= args[2] then return 0 end
  redis.call('DEL', checkout_key(sid))
  redis.call('ZREM', CHECKOUTS, sid)
  return 1
end

-- cartd_checkouts_stale: checkouts begun before now - ARGV[1] ms, at most ARGV[2].
-- Returns {sid, key, sid, key, ...}.
local function checkouts_stale(keys, args)
  local before = now_ms() - tonumber(args[1])
  local out = {}
  for _, sid in ipairs(redis.call('ZRANGE', CHECKOUTS, '-inf', before, 'BYSCORE', 'LIMIT', 0,
                                  tonumber(args[2]))) do
    local key = redis.call('HGET', checkout_key(sid), 'key')
    if key then
      table.insert(out, sid)
      table.insert(out, key)
    else
      redis.call('ZREM', CHECKOUTS, sid)
    end
  end
  return out
end

redis.register_function('cartd_checkout_begin', checkout_begin)
redis.register_function('cartd_checkout_finish', checkout_finish)
redis.register_function('cartd_checkout_abort', checkout_abort)
redis.register_function('cartd_checkouts_stale', checkouts_stale)
