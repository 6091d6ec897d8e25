-- checkout.lua: the Redis half of a checkout. A checkout is three steps, each safe to
-- repeat, so that a crash at any point leaves either one order or a live cart:
--   1. cartd_checkout_begin freezes the cart: it records the lines and the idempotency
--      key in co:{sid}, and keeps the units held for a grace period;
--   2. cartd (not Redis) writes the order to the main DB, idempotently per cart;
--   3. cartd_checkout_finish turns the holds into sold units: it drops the holds, lowers
--      the on-hand mirror, deletes the cart and records ck:{sid}.
-- A checkout left between 1 and 3 (cartd died, or the DB is slow) is settled by
-- recovery: with an order in the DB it is finished; without one, recovery first records
-- the attempt as aborted in the DB (a fence: step 2 of that attempt can no longer
-- commit, even if its transaction is still waiting for a lock), then aborts it here
-- (the cart lives on). Each begin makes a new attempt id; a retry with the same key
-- resumes the same attempt.

-- A checkout begun before attempt ids existed: its attempt is named by cart and key.
local function attempt_of(sid, key) return sid .. ' ' .. key end

-- cartd_checkout_begin
-- KEYS[1] the cart
-- ARGV[1] session id  ARGV[2] idempotency key  ARGV[3] grace in ms (holds kept at least so long)
-- ARGV[4] a new attempt id (used if this call begins a checkout)  ARGV[5] deadline quantum
-- Returns one of
--   {'begun', lines_json, attempt}
--   {'resume', lines_json, attempt}   (same key, checkout in progress)
--   {'done', order_id}        (this key already made an order)
--   {'conflict', order_id}    (another key already made one; order_id may be '')
--   {'expired'} {'unknown'} {'empty'}
-- lines_json: [{product_id, inventory_id, name, quantity, unit_price_cents}]
-- The answer to a checkout of a cart that has one already (done, or in progress), else
-- nil. A resume carries the checkout's deadline when it recorded one (split.lua).
local function checkout_known(sid, key)
  local done = redis.call('GET', done_key(sid))
  if done then
    local done_key_value, order_id = string.match(done, '^(.*) (%S+)$')
    if done_key_value == key then return {'done', order_id} end
    return {'conflict', order_id}
  end
  local co = redis.call('HMGET', checkout_key(sid), 'key', 'lines', 'attempt', 'deadline')
  if co[1] then
    if co[1] ~= key then return {'conflict', ''} end
    return {'resume', co[2], co[3] or attempt_of(sid, co[1]), tonumber(co[4] or 0), ''}
  end
  return nil
end

local function checkout_begin(keys, args)
  local ck, sid, key, grace = keys[1], args[1], args[2], tonumber(args[3])
  local known = checkout_known(sid, key)
  if known then return known end
  local now = now_ms()
  local view = cart_view(ck, now)
  if not view then return {missing_cart(sid)} end  -- not checked_out: no done_key
  -- cart_view ends with an array of the cart's waits when it waits on some row: not a line.
  local last = #view
  if type(view[last]) == 'table' then last = last - 1 end
  if last == 1 then return {'empty'} end

  -- The holds last at least the grace period: the cart's deadline moves, never back.
  local deadline = math.max(view[1], round_up(now + grace, tonumber(args[5])))
  local lines = {}
  for i = 2, last, 5 do
    local pid, inv, qty = view[i], view[i + 1], view[i + 2]
    table.insert(lines, {product_id = pid, inventory_id = inv, quantity = qty,
                         name = view[i + 3], unit_price_cents = view[i + 4]})
    if deadline ~= view[1] then move_hold(inv, view[1], deadline, qty) end
    mark_pending(inv, sid, deadline)
  end
  if deadline ~= view[1] then redis.call('PEXPIREAT', ck, deadline) end
  redis.call('HSET', ck, CHECKING_OUT, 1)
  local json = cjson.encode(lines)
  redis.call('HSET', checkout_key(sid), 'key', key, 'attempt', args[4], 'lines', json,
             'started', now)
  redis.call('ZADD', checkouts_key(sid), now, sid)
  return {'begun', json, args[4]}
end

-- cartd_checkout_finish: the order is in the main DB; make Redis agree. Works whether
-- or not the checkout marker is still there (recovery may settle a cart that expired).
-- KEYS[1] the cart
-- ARGV[1] session id  ARGV[2] idempotency key  ARGV[3] order id
-- ARGV[4] JSON [{inventory_id, quantity, on_hand, version}]: the order's lines, with
--         each row's on_hand in the main DB after the order and its version (the mirror
--         takes it unless it has a newer one)
-- Returns {'finished', units}: units = the held units this call dropped (sold now), or
-- {'done'} when it had finished already.
local function checkout_finish(keys, args)
  local ck, sid, key, order_id = keys[1], args[1], args[2], args[3]
  if redis.call('EXISTS', done_key(sid)) == 1 then return {'done'} end
  -- The cart's holds go with it, whatever their quantity now: had its lines changed
  -- since the order was drafted, a hold of the new quantity must not be orphaned. A
  -- cart that expired meanwhile has no holds left (they ended with their buckets).
  local units = 0
  local now = now_ms()
  local order = cjson.decode(args[4])
  -- Which rows this checkout still marks: their on_hand does not reflect the sale yet
  -- (see settle_on_hand), so the sale can be applied as a delta.
  local marked = {}
  for _, l in ipairs(order) do marked[l.inventory_id] = pending_live(l.inventory_id, sid, now) end
  local deadline = live_deadline(ck, now)
  if deadline then
    local lines = cart_lines(redis.call('HGETALL', ck))
    units = unhold_lines(lines, deadline)
    for _, l in ipairs(lines) do clear_pending(l[2], sid) end
  end
  local sold = {}
  for _, l in ipairs(order) do
    clear_pending(l.inventory_id, sid)
    if l.version then
      settle_on_hand(l.inventory_id, l.on_hand, l.version,
                     marked[l.inventory_id] and -l.quantity or nil, false)
    end
    table.insert(sold, {l.product_id or '', l.inventory_id, l.quantity})
    if redis.call('EXISTS', stock_key(l.inventory_id)) == 1 then pour(l.inventory_id, now) end
  end
  -- The cart's offers go to the next in line only now: before its rows' on_hand fell by
  -- the sale, a pour would have seen the sold units (no longer held) as free to offer.
  if deadline then leave_all(ck, sid, now) end
  redis.call('DEL', ck, checkout_key(sid))
  redis.call('ZREM', checkouts_key(sid), sid)
  redis.call('SET', done_key(sid), key .. ' ' .. order_id, 'PX', DONE_TTL_MS)
  cart_event(sid, 'checked_out', sold, order_id)
  return {'finished', units}
end

-- cartd_checkout_abort: gives up a checkout that made no order; the cart lives on.
-- KEYS[1] the cart
-- ARGV[1] session id  ARGV[2] idempotency key  ARGV[3] attempt id
-- ARGV[4] JSON [{inventory_id, on_hand, version}]: rows whose on_hand the mirror takes
--         (versioned) in the same step, when the DB refused the order for lack of units
-- Returns 1 if there was such a checkout.
local function checkout_abort(keys, args)
  local sid = args[1]
  for _, r in ipairs(cjson.decode(args[4] or '[]')) do
    if redis.call('EXISTS', stock_key(r.inventory_id)) == 1 then
      mirror_on_hand(r.inventory_id, r.on_hand, r.version)
      pour(r.inventory_id, now_ms())
    end
  end
  local co = redis.call('HMGET', checkout_key(sid), 'key', 'attempt', 'lines')
  if co[1] ~= args[2] or (co[2] or attempt_of(sid, co[1])) ~= args[3] then return 0 end
  for _, l in ipairs(cjson.decode(co[3])) do clear_pending(l.inventory_id, sid) end
  redis.call('DEL', checkout_key(sid))
  redis.call('ZREM', checkouts_key(sid), sid)
  redis.call('HDEL', keys[1], CHECKING_OUT)
  return 1
end

-- cartd_checkouts_stale: checkouts begun before now - ARGV[1] ms, at most ARGV[2] per group.
-- KEYS: checkout indexes ({c<n>}#checkouts) of one or more groups (see cartd_sweep)
-- ARGV[3], ARGV[4]: the lease owner and its length in ms (see lease; absent: none)
-- Returns {sid, key, attempt, ...}.
local function checkouts_stale(keys, args)
  local before = now_ms() - tonumber(args[1])
  local out = {}
  for _, index in ipairs(indexes_of(keys, args[3])) do
    local stale = {}
    if lease(index, args[3], tonumber(args[4])) then
      stale = redis.call('ZRANGE', index, '-inf', before, 'BYSCORE', 'LIMIT', 0, tonumber(args[2]))
    end
    for _, sid in ipairs(stale) do
      local co = redis.call('HMGET', checkout_key(sid), 'key', 'attempt')
      -- An entry without its checkout is left alone: the checkout's end removes both at
      -- once, so nothing here can tell what became of it.
      if co[1] then
        table.insert(out, sid)
        table.insert(out, co[1])
        table.insert(out, co[2] or attempt_of(sid, co[1]))
      end
    end
  end
  return out
end

redis.register_function('cartd_checkout_begin', checkout_begin)
redis.register_function('cartd_checkout_finish', checkout_finish)
redis.register_function('cartd_checkout_abort', checkout_abort)
redis.register_function('cartd_checkouts_stale', checkouts_stale)
