-- get_cart.lua: cartd_get_cart reads a live cart. Reading does not slide its TTL.
--
-- KEYS: none (computed: s:{sid}, c:{sid})
-- ARGV[1] session id
-- Returns nil when the cart is unknown or expired, else
--   {deadline_ms, product_id, "inventory_id quantity", product_id, ...}
local function get_cart(keys, args)
  local sid = args[1]
  local deadline = redis.call('PEXPIRETIME', session_key(sid))
  if deadline < 0 then return nil end
  local reply = redis.call('HGETALL', cart_key(sid))
  table.insert(reply, 1, deadline)
  return reply
end

redis.register_function{function_name = 'cartd_get_cart', callback = get_cart,
                        flags = {'no-writes'}}
