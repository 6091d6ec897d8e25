-- release.lua: returning a cart's units. Every path that ends a cart without an order
-- (expiry event, sweeper, abandon) goes through release_cart, which is idempotent: it
-- returns only holds that still exist and appends an event only for a cart it deleted.

-- Returns the cart's held units, deletes the cart and its index entries, remembers why
-- it ended (g:{sid}), and appends one event to cart-events. Returns 1 if there was a
-- cart with lines, 0 if it was empty or already gone, and the units this call returned
-- (holds already dropped by logical expiry return nothing here; the metrics count
-- them where they were dropped). A checkout marker (co:{sid}) is left for checkout
-- recovery, which settles it against the main DB.
local function release_cart(sid, reason)
  local ck = cart_key(sid)
  local fields = redis.call('HGETALL', ck)
  redis.call('ZREM', DEADLINES, sid)
  redis.call('DEL', session_key(sid))
  redis.call('SET', gone_key(sid), reason, 'PX', GONE_TTL_MS)
  if #fields == 0 then return 0, 0 end
  local lines = {}
  local units = 0
  for i = 1, #fields, 2 do
    local inv, qty = parse_line(fields[i + 1])
    if unhold(inv, sid, qty) then units = units + qty end
    table.insert(lines, {product_id = fields[i], inventory_id = inv, quantity = qty})
  end
  redis.call('DEL', ck)
  redis.call('XADD', EVENTS, 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'type', reason, 'cart', sid,
             'lines', cjson.encode(lines))
  return 1, units
end

-- cartd_expire: releases a cart whose session has expired; a live cart is left alone.
-- KEYS: none (computed from the session id)
-- ARGV[1] session id
-- Returns {released, units}: released = 1 if this call released the cart, else 0;
-- units = how many held units it returned.
local function expire(keys, args)
  if redis.call('EXISTS', session_key(args[1])) == 1 then return {0, 0} end
  local released, units = release_cart(args[1], 'expired')
  return {released, units}
end

-- cartd_abandon: the shopper gives the cart up; its units return at once.
-- ARGV[1] session id.
-- Returns {'abandoned', cart_view before release, units returned},
-- {'checkout_in_progress'} (nothing changes), or {'expired' | 'unknown'} when there is
-- no live cart.
local function abandon(keys, args)
  local sid = args[1]
  local view = cart_view(sid)
  if not view then return {missing_cart(sid)} end
  if redis.call('EXISTS', checkout_key(sid)) == 1 then return {'checkout_in_progress'} end
  local _, units = release_cart(sid, 'abandoned')
  return {'abandoned', view, units}
end

-- cartd_sweep: releases carts whose deadline has passed, oldest first.
-- KEYS: none (dl and the carts it names)
-- ARGV[1] most carts to release in this call
-- Returns {released, more (0|1), units}: more = 1 when the batch was full; units = the
-- held units returned.
local function sweep(keys, args)
  local now = now_ms()
  local batch = tonumber(args[1])
  local due = redis.call('ZRANGE', DEADLINES, '-inf', '(' .. now, 'BYSCORE', 'LIMIT', 0, batch)
  local released, units = 0, 0
  for _, sid in ipairs(due) do
    local deadline = redis.call('PEXPIRETIME', session_key(sid))
    if deadline >= 0 then
      -- Still live: its index entry is stale (cannot happen through cartd_set_line,
      -- which moves both together), so put the entry right instead of releasing.
      redis.call('ZADD', DEADLINES, deadline, sid)
    else
      local one, returned = release_cart(sid, 'expired')
      released, units = released + one, units + returned
    end
  end
  return {released, #due == batch and 1 or 0, units}
end

redis.register_function('cartd_expire', expire)
redis.register_function('cartd_abandon', abandon)
redis.register_function('cartd_sweep', sweep)
