-- stock.lua: the stock mirror (st:{inv}) and what the main DB writer reads from it.

-- {on_hand, reserved, ...} of rows as holds see them now (-1, -1 for an unknown row).
local function live_counts(rows)
  local now = now_ms()
  local out = {}
  for _, inv in ipairs(rows) do
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

-- cartd_mirror: sets stock rows from the main DB (on_hand only if its version is not
-- older than the mirror's and no change is under way on the row, so running it twice,
-- or late, changes nothing) and recomputes each row's reserved count from the holds
-- that exist.
-- ARGV: inventory_id, product_id, on_hand, version, name, price_cents, repeated.
-- Returns the number of rows mirrored.
local function mirror(keys, args)
  local now = now_ms()
  for i = 1, #args, 6 do
    local inv = args[i]
    drop_expired(inv, now)
    local reserved = 0
    for _, member in ipairs(redis.call('ZRANGE', holds_key(inv), 0, -1)) do
      reserved = reserved + hold_quantity(member)
    end
    redis.call('HSET', stock_key(inv), 'p', args[i + 1], 'r', reserved, 'n', args[i + 4],
               'pc', args[i + 5])
    mirror_on_hand(inv, tonumber(args[i + 2]), tonumber(args[i + 3]), true)
    redis.call('SADD', DIRTY, inv)
  end
  redis.call('SET', 'cartd:mirrored', now)
  return #args / 6
end

-- cartd_admin_hold: before an admin change lowers a row's on_hand in the main DB, holds
-- the units it removes, so that no cart can hold them meanwhile. The hold expires by
-- itself at its deadline if cartd dies before cartd_apply_on_hand drops it.
-- ARGV[1] inventory_id  ARGV[2] member ("admin-<request>:<quantity>")  ARGV[3] quantity
-- ARGV[4] how long the hold lasts, in ms
-- Returns {'ok', on_hand, reserved}, {'below_reserved', on_hand, reserved} (fewer units
-- are available than the change removes) or {'unknown_inventory'}.
local function admin_hold(keys, args)
  local inv, member, qty = args[1], args[2], tonumber(args[3])
  if redis.call('EXISTS', stock_key(inv)) == 0 then return {'unknown_inventory'} end
  local now = now_ms()
  drop_expired(inv, now)
  local row = redis.call('HMGET', stock_key(inv), 'oh', 'r')
  local on_hand, reserved = tonumber(row[1]), tonumber(row[2] or 0)
  if on_hand - reserved < qty then return {'below_reserved', on_hand, reserved} end
  local deadline = now + tonumber(args[4])
  if redis.call('ZADD', holds_key(inv), 'NX', deadline, member) == 1 then
    adjust_reserved(inv, qty)
    reserved = reserved + qty
    mark_pending(inv, member, deadline)
  end
  return {'ok', on_hand, reserved}
end

-- cartd_apply_on_hand: takes rows' on_hand from the main DB after it changed them
-- (versioned, see mirror_on_hand), and ends an admin change in the same step: drops its
-- hold and its pending mark.
-- ARGV[1] inventory_id of an admin hold to drop, or ''  ARGV[2] that hold's member
-- ARGV[3..] inventory_id, on_hand, version, repeated
-- Returns {on_hand, reserved, ...} per row as the mirror has it now (-1, -1: unknown).
local function apply_on_hand(keys, args)
  if args[1] ~= '' then
    unhold_member(args[1], args[2])
    clear_pending(args[1], args[2])
  end
  local rows = {}
  for i = 3, #args, 3 do
    local inv = args[i]
    if redis.call('EXISTS', stock_key(inv)) == 1 then
      mirror_on_hand(inv, tonumber(args[i + 1]), tonumber(args[i + 2]))
    end
    table.insert(rows, inv)
  end
  return live_counts(rows)
end

-- cartd_sync_on_hand: the mirror sync. Takes rows' on_hand from the main DB where it is
-- newer and no change is under way on the row (a careful mirror_on_hand).
-- ARGV: inventory_id, on_hand, version, repeated.  Returns how many rows it changed.
local function sync_on_hand(keys, args)
  local changed = 0
  for i = 1, #args, 3 do
    local inv = args[i]
    if redis.call('EXISTS', stock_key(inv)) == 1 and
        mirror_on_hand(inv, tonumber(args[i + 1]), tonumber(args[i + 2]), true) then
      changed = changed + 1
    end
  end
  return changed
end

-- cartd_stock_many: like cartd_stock for many rows in one call.
-- ARGV: inventory ids.  Returns {on_hand, reserved, ...} in order (-1, -1 for unknown).
local function stock_many(keys, args)
  return live_counts(args)
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
redis.register_function('cartd_admin_hold', admin_hold)
redis.register_function('cartd_apply_on_hand', apply_on_hand)
redis.register_function('cartd_sync_on_hand', sync_on_hand)
redis.register_function('cartd_stock_many', stock_many)
redis.register_function('cartd_take_dirty', take_dirty)
