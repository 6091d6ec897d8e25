-- get_cart.lua: cartd_get_cart reads a live cart. Reading does not slide its TTL.
--
-- KEYS: none (computed: s:{sid}, c:{sid})
-- ARGV[1] session id
-- Returns the cart_view (see holds.lua), or 'expired' / 'unknown' (see missing_cart).
local function get_cart(keys, args)
  return cart_view(args[1]) or missing_cart(args[1])
end

redis.register_function{function_name = 'cartd_get_cart', callback = get_cart,
                        flags = {'no-writes'}}

-- cartd_create_cart: starts an empty cart.
-- ARGV[1] new session id  ARGV[2] cart TTL in ms  ARGV[3] maximum lifetime in ms
-- Returns the cart_view of the new cart.
local function create_cart(keys, args)
  local sid, now = args[1], now_ms()
  local deadline = now + math.min(tonumber(args[2]), tonumber(args[3]))
  redis.call('SET', session_key(sid), now, 'PXAT', deadline)
  redis.call('ZADD', DEADLINES, deadline, sid)
  return cart_view(sid)
end

redis.register_function('cartd_create_cart', create_cart)
