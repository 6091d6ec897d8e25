-- stock.lua: the stock mirror ({s<n>}:<inv>) and what the main DB writer reads from it.
-- Functions that take several rows name each in KEYS, in the order of their ids in ARGV.

-- {on_hand, reserved} of a row as holds see it now, or -1, -1 for an unknown row.
local function live_counts(inv, now)
  local row = redis.call('HMGET', stock_key(inv), 'oh', 'r', 'e')
  if not row[1] then return -1, -1 end
  local dropped, _, offered = drop_expired(inv, now, row[3])
  return tonumber(row[1]), tonumber(row[2] or 0) - dropped + offered
end

local function live_counts_many(invs)
  local now = now_ms()
  local out = {}
  for _, inv in ipairs(invs) do
    local on_hand, reserved = live_counts(inv, now)
    table.insert(out, on_hand)
    table.insert(out, reserved)
  end
  return out
end

-- cartd_stock: one stock row as holds see it right now (expired buckets are dropped).
-- KEYS[1] the row  ARGV[1] inventory_id
-- Returns nil if unknown, else {product_id, on_hand, reserved}.
local function stock(keys, args)
  local inv = args[1]
  local row = redis.call('HMGET', keys[1], 'p', 'oh', 'r', 'e')
  if not row[1] then return nil end
  local dropped, _, offered = drop_expired(inv, now_ms(), row[4])
  return {row[1], tonumber(row[2]), tonumber(row[3] or 0) - dropped + offered}
end

-- The sum of a row's buckets (what r must be).
local function bucket_sum(inv)
  local fields = redis.call('HGETALL', stock_key(inv))
  local sum = 0
  for i = 1, #fields, 2 do
    if string.byte(fields[i], 1) == 116 then sum = sum + tonumber(fields[i + 1]) end
  end
  return sum
end

-- cartd_mirror: sets stock rows from the main DB (on_hand only if its version is not
-- older than the mirror's and no change is under way on the row, so running it twice,
-- or late, changes nothing) and recomputes each row's reserved count from its buckets.
-- KEYS: the rows.  ARGV: inventory_id, product_id, on_hand, version, name, price_cents,
-- max_per_cart (0: none), repeated.  Marks every row for the DB writer (after a failover
-- the main DB may hold a count of the primary that was lost).  Returns the number of rows
-- mirrored. The rows may span slots only on a standalone Redis; the caller marks the
-- mirror complete (cartd:mirrored) once every row is in.
--
-- cartd_mirror_sync: the same, for the periodic mirror sync of a Redis Cluster, which
-- sends every row again every --mirror-sync-ms: each row's arguments end with the main
-- DB's reserved count, and a row is marked for the DB writer only when its live count
-- differs from it (a row a node lost, a DB write that was lost), not every row each time.
local function mirror_rows(args, against_db)
  local now = now_ms()
  local per_row = against_db and 8 or 7
  for i = 1, #args, per_row do
    local inv = args[i]
    redis.call('HSET', stock_key(inv), 'p', args[i + 1], 'r', bucket_sum(inv), 'n', args[i + 4],
               'pc', args[i + 5])
    if args[i + 6] == '0' then
      redis.call('HDEL', stock_key(inv), 'mx')
    else
      redis.call('HSET', stock_key(inv), 'mx', args[i + 6])
    end
    mirror_on_hand(inv, tonumber(args[i + 2]), tonumber(args[i + 3]), true)
    -- Expired buckets are dropped (and their units poured to the line) only now, against
    -- the main DB's on_hand: before, the old count could offer units the DB no longer has.
    drop_expired(inv, now, false)
    if not against_db or
        tonumber(redis.call('HGET', stock_key(inv), 'r')) ~= tonumber(args[i + 7]) then
      mark_dirty(inv)
    end
    pour(inv, now)
  end
  return math.floor(#args / per_row)
end
local function mirror(keys, args) return mirror_rows(args, false) end
local function mirror_sync(keys, args) return mirror_rows(args, true) end

-- The quantity of an admin hold's pending mark "admin-<request>:<quantity>".
local function admin_hold_quantity(member)
  return tonumber(string.match(member, ':(%d+)$'))
end

-- cartd_admin_hold: before an admin change lowers a row's on_hand in the main DB, holds
-- the units it removes, so that no cart can hold them meanwhile. The hold is units in
-- the bucket of its deadline, recorded by the row's pending mark (member = ARGV[2]): it
-- ends by itself at its deadline if cartd dies before cartd_apply_on_hand drops it.
-- KEYS[1] the row
-- ARGV[1] inventory_id  ARGV[2] member ("admin-<request>:<quantity>")  ARGV[3] quantity
-- ARGV[4] how long the hold lasts, in ms
-- Returns {'ok', on_hand, reserved}, {'below_reserved', on_hand, reserved} (fewer units
-- are available than the change removes) or {'unknown_inventory'}.
local function admin_hold(keys, args)
  local inv, member, qty = args[1], args[2], tonumber(args[3])
  local now = now_ms()
  local on_hand, reserved = live_counts(inv, now)
  if on_hand < 0 then return {'unknown_inventory'} end
  if on_hand - reserved < qty then return {'below_reserved', on_hand, reserved} end
  local deadline = now + tonumber(args[4])
  if redis.call('ZADD', pending_key(inv), 'NX', deadline, member) == 1 then
    add_hold(inv, deadline, qty, false)
    reserved = reserved + qty
  end
  return {'ok', on_hand, reserved}
end

-- Drops an admin hold: its units leave the bucket of its deadline, unless the hold has
-- lapsed (its bucket ended, or ends, by itself) or was dropped already.
-- Returns the units it dropped (the change's own effect on on_hand is minus those), or
-- nil when there was no live hold.
local function drop_admin_hold(inv, member, now)
  local deadline = redis.call('ZSCORE', pending_key(inv), member)
  if not deadline then return nil end
  clear_pending(inv, member)
  deadline = tonumber(deadline)
  if deadline < now then return nil end
  local qty = admin_hold_quantity(member)
  add_hold(inv, deadline, -qty)
  return qty
end

-- cartd_apply_on_hand: takes rows' on_hand from the main DB after it changed them
-- (versioned, see mirror_on_hand), and ends an admin change in the same step: drops its
-- hold and its pending mark.
-- KEYS: the rows (the hold's row among them, when there is one)
-- ARGV[1] inventory_id of an admin hold to drop, or ''  ARGV[2] that hold's member
-- ARGV[3..] inventory_id, on_hand, version, repeated
-- Returns {on_hand, reserved, ...} per row as the mirror has it now (-1, -1: unknown).
local function apply_on_hand(keys, args)
  local now = now_ms()
  local held = nil
  if args[1] ~= '' and redis.call('EXISTS', stock_key(args[1])) == 1 then
    drop_expired(args[1], now, false)
    held = drop_admin_hold(args[1], args[2], now)
  end
  local rows = {}
  local poured = false
  for i = 3, #args, 3 do
    local inv = args[i]
    if redis.call('EXISTS', stock_key(inv)) == 1 then
      if inv == args[1] then poured = true end
      -- With another change under way on the row, the change applies as a delta when
      -- it held its units here (a live admin hold); a restock, which holds nothing, is
      -- left to the other changes' steps and the mirror sync (see settle_on_hand).
      if inv == args[1] then
        settle_on_hand(inv, tonumber(args[i + 1]), tonumber(args[i + 2]), held and -held, false)
      else
        settle_on_hand(inv, tonumber(args[i + 1]), tonumber(args[i + 2]), nil, true)
      end
      pour(inv, now)  -- a restock goes to waiting carts first
    end
    table.insert(rows, inv)
  end
  -- A hold dropped for a change that did not happen (no row given: the DB refused or
  -- failed) frees its units: they go to waiting carts first. With the row given, the
  -- pour above runs once on_hand has the change (before, it would offer removed units).
  if held and not poured then pour(args[1], now) end
  return live_counts_many(rows)
end

-- cartd_sync_on_hand: the mirror sync. Takes rows' on_hand from the main DB where it is
-- newer and no change is under way on the row (a careful mirror_on_hand).
-- KEYS: the rows.  ARGV: inventory_id, on_hand, version, repeated.
-- Returns how many rows it changed.
local function sync_on_hand(keys, args)
  local changed = 0
  for i = 1, #args, 3 do
    local inv = args[i]
    if redis.call('EXISTS', stock_key(inv)) == 1 and
        mirror_on_hand(inv, tonumber(args[i + 1]), tonumber(args[i + 2]), true) then
      changed = changed + 1
      pour(inv, now_ms())
    end
  end
  return changed
end

-- cartd_stock_many: like cartd_stock for many rows in one call.
-- KEYS: the rows.  ARGV: inventory ids.
-- Returns {on_hand, reserved, ...} in order (-1, -1 for unknown).
local function stock_many(keys, args)
  return live_counts_many(args)
end

-- cartd_take_dirty: pops up to ARGV[1] stock rows marked dirty per group and returns
-- their current counts, for the main DB writer to store as absolute values.
-- KEYS: dirty sets ({s<n>}#dirty) of one or more groups (see cartd_sweep)
-- ARGV[2], ARGV[3]: the lease owner and its length in ms (see lease; absent: none)
-- Returns {more (0|1), inventory_id, on_hand, reserved, ...}: more = 1 when a group's
-- batch was full.
local function take_dirty(keys, args)
  local now = now_ms()
  local batch = tonumber(args[1])
  local out = {0}
  for _, key in ipairs(indexes_of(keys, args[2])) do
    local popped = {}
    if lease(key, args[2], tonumber(args[3])) then popped = redis.call('SPOP', key, batch) end
    local absent = {}
    for _, inv in ipairs(popped) do
      local on_hand, reserved = live_counts(inv, now)
      if on_hand >= 0 then
        table.insert(out, inv)
        table.insert(out, on_hand)
        table.insert(out, reserved)
      else
        table.insert(absent, inv)
      end
    end
    -- Dropping expired buckets marks a popped row dirty again: it is written now. A row
    -- not here (lost with its node, until the mirror writes it again) stays marked.
    if #popped > 0 then redis.call('SREM', key, unpack(popped)) end
    if #absent > 0 then redis.call('SADD', key, unpack(absent)) end
    if #popped == batch and #absent == 0 then out[1] = 1 end
  end
  return out
end

redis.register_function{function_name = 'cartd_stock', callback = stock}
redis.register_function('cartd_mirror', mirror)
redis.register_function('cartd_mirror_sync', mirror_sync)
redis.register_function('cartd_admin_hold', admin_hold)
redis.register_function('cartd_apply_on_hand', apply_on_hand)
redis.register_function('cartd_sync_on_hand', sync_on_hand)
redis.register_function('cartd_stock_many', stock_many)
redis.register_function('cartd_take_dirty', take_dirty)
