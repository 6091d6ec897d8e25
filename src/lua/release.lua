-- release.lua: returning a cart's units. Every path that ends a cart without an order
-- (expiry event, sweeper, abandon) goes through release_cart, which is idempotent: it
-- returns only holds that still exist and appends an event only for a cart it deleted.

-- Returns the cart's held units, deletes the cart and its index entries, remembers why
-- it ended (g:{sid}), and appends one event to cart-events. Returns 1 if there was a
-- cart with lines, 0 if it was empty or already gone. A checkout marker (co:{sid}) is
-- left for checkout recovery, which settles it against the main DB.
local function release_cart(sid, reason)
  local ck = cart_key(sid)
  local fields = redis.call('HGETALL', ck)
  redis.call('ZREM', DEADLINES, sid)
  redis.call('DEL', session_key(sid))
  redis.call('SET', gone_key(sid), reason, 'PX', GONE_TTL_MS)
  if #fields == 0 then return 0 end
  local lines = {}
  for i = 1, #fields, 2 do
    local inv, qty = parse_line(fields[i + 1])
    unhold(inv, sid, qty)
    table.insert(lines, {product_id = fields[i], inventory_id = inv, quantity = qty})
  end
  redis.call('DEL', ck)
  redis.call('XADD', EVENTS, 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'type', reason, 'cart', sid,
             'lines', cjson.encode(lines))
  return 1
end

-- cartd_expire: releases a cart whose session has expired; a live cart is left alone.
-- KEYS: none (computed from the session id)
-- ARGV[1] session id
-- Returns 1 if this call released the cart, else 0.
local function expire(keys, args)
  if redis.call('EXISTS', session_key(args[1])) == 1 then return 0 end
  return release_cart(args[1], 'expired')
end

-- cartd_abandon: the shopper gives the cart up; its units return at once.
-- ARGV[1] session id.
-- Returns {'abandoned', cart_view before release}, {'checkout_in_progress'} (nothing
-- changes), or {'expired' | 'unknown'} when there is no live cart.
local function abandon(keys, args)
  local sid = args[1]
  local view = cart_view(sid)
  if not view then return {missing_cart(sid)} end
  if redis.call('EXISTS', checkout_key(sid)) == 1 then return {'checkout_in_progress'} end
  release_cart(sid, 'abandoned')
  return {'abandoned', view}
end

-- cartd_sweep: releases carts whose deadline has passed, oldest first.
-- KEYS: none (dl and the carts it names)
-- ARGV[1] most carts to release in this call
-- Returns {released, more (0|1)}: more = 1 when the batch was full.
local function sweep(keys, args)
  local now = now_ms()
  local batch = tonumber(args[1])
  local due = redis.call('ZRANGE', DEADLINES, '-inf', '(' .. now, 'BYSCORE', 'LIMIT', 0, batch)
  local released = 0
  for _, sid in ipairs(due) do
    local deadline = redis.call('PEXPIRETIME', session_key(sid))
    if deadline >= 0 then
      -- Still live: its index entry is stale (cannot happen through cartd_set_line,
      -- which moves both together), so put the entry right instead of releasing.
      redis.call('ZADD', DEADLINES, deadline, sid)
    else
      released = released + release_cart(sid, 'expired')
    end
  end
  return {released, #due == batch and 1 or 0}
end

redis.register_function('cartd_expire', expire)
redis.register_function('cartd_abandon', abandon)
redis.register_function('cartd_sweep', sweep)
