-- get_cart.lua: cartd_get_cart reads a live cart. Reading does not slide its TTL.
--
-- KEYS[1] the cart   ARGV[1] session id
-- Returns the cart_view (see holds.lua), or 'expired' / 'unknown' / 'checked_out' (see
-- missing_cart).
local function get_cart(keys, args)
  return cart_view(keys[1], now_ms()) or missing_cart(args[1])
end

redis.register_function{function_name = 'cartd_get_cart', callback = get_cart,
                        flags = {'no-writes'}}

-- cartd_create_cart: starts an empty cart.
-- KEYS[1] the cart   ARGV[1] its session id  ARGV[2] cart TTL in ms
-- ARGV[3] maximum lifetime in ms  ARGV[4] the deadline quantum in ms
-- Returns the cart_view of the new cart.
local function create_cart(keys, args)
  local now = now_ms()
  local deadline = math.min(round_up(now + tonumber(args[2]), tonumber(args[4])),
                            now + tonumber(args[3]))
  redis.call('HSET', keys[1], BIRTH, now)
  redis.call('PEXPIREAT', keys[1], deadline)
  return cart_view(keys[1], now)
end

redis.register_function('cartd_create_cart', create_cart)
