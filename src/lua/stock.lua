-- stock.lua: the stock mirror (st:{inv}) and what the main DB writer reads from it.

-- cartd_stock: one stock row as holds see it right now (expired holds are dropped).
-- ARGV[1] inventory_id
-- Returns nil if unknown, else {product_id, on_hand, reserved}.
local function stock(keys, args)
  local inv = args[1]
  if redis.call('EXISTS', stock_key(inv)) == 0 then return nil end
  drop_expired(inv, now_ms())
  local row = redis.call('HMGET', stock_key(inv), 'p', 'oh', 'r')
  return {row[1], tonumber(row[2]), tonumber(row[3] or 0)}
end

-- cartd_mirror: sets stock rows from the main DB (absolute values, so running it twice
-- changes nothing) and recomputes each row's reserved count from the holds that exist.
-- ARGV: inventory_id, product_id, on_hand, name, price_cents, repeated.
-- Returns the number of rows mirrored.
local function mirror(keys, args)
  local now = now_ms()
  for i = 1, #args, 5 do
    local inv = args[i]
    drop_expired(inv, now)
    local reserved = 0
    for _, member in ipairs(redis.call('ZRANGE', holds_key(inv), 0, -1)) do
      reserved = reserved + hold_quantity(member)
    end
    redis.call('HSET', stock_key(inv), 'p', args[i + 1], 'oh', args[i + 2], 'r', reserved,
               'n', args[i + 3], 'pc', args[i + 4])
    redis.call('SADD', DIRTY, inv)
  end
  redis.call('SET', 'cartd:mirrored', now)
  return #args / 5
end

-- cartd_set_on_hand: sets a row's on-hand mirror after the main DB changed it, unless
-- that would leave fewer units than are held.
-- ARGV[1] inventory_id  ARGV[2] on_hand (absolute)
-- Returns {'ok', reserved}, {'below_reserved', reserved} or {'unknown_inventory'}.
local function set_on_hand(keys, args)
  local inv, on_hand = args[1], tonumber(args[2])
  if redis.call('EXISTS', stock_key(inv)) == 0 then return {'unknown_inventory'} end
  drop_expired(inv, now_ms())
  local reserved = tonumber(redis.call('HGET', stock_key(inv), 'r') or 0)
  if on_hand < reserved then return {'below_reserved', reserved} end
  redis.call('HSET', stock_key(inv), 'oh', on_hand)
  redis.call('SADD', DIRTY, inv)
  return {'ok', reserved}
end

-- cartd_stock_many: like cartd_stock for many rows in one call.
-- ARGV: inventory ids.  Returns {on_hand, reserved, ...} in order (-1, -1 for unknown).
local function stock_many(keys, args)
  local now = now_ms()
  local out = {}
  for _, inv in ipairs(args) do
    if redis.call('EXISTS', stock_key(inv)) == 1 then
      drop_expired(inv, now)
      local row = redis.call('HMGET', stock_key(inv), 'oh', 'r')
      table.insert(out, tonumber(row[1]))
      table.insert(out, tonumber(row[2] or 0))
    else
      table.insert(out, -1)
      table.insert(out, -1)
    end
  end
  return out
end

-- cartd_take_dirty: pops up to ARGV[1] stock rows marked dirty and returns their
-- current counts, for the main DB writer to store as absolute values.
-- Returns {inventory_id, on_hand, reserved, ...}.
local function take_dirty(keys, args)
  local now = now_ms()
  local out = {}
  for _, inv in ipairs(redis.call('SPOP', DIRTY, tonumber(args[1]))) do
    drop_expired(inv, now)
    local row = redis.call('HMGET', stock_key(inv), 'oh', 'r')
    if row[1] then
      table.insert(out, inv)
      table.insert(out, tonumber(row[1]))
      table.insert(out, tonumber(row[2] or 0))
    end
  end
  return out
end

redis.register_function{function_name = 'cartd_stock', callback = stock}
redis.register_function('cartd_mirror', mirror)
redis.register_function('cartd_set_on_hand', set_on_hand)
redis.register_function('cartd_stock_many', stock_many)
redis.register_function('cartd_take_dirty', take_dirty)
