#!lua name=cartd
-- holds.lua: key names and hold bookkeeping shared by every cartd function.
--
-- Redis data model (hash tags keep a cart's keys, and a stock row's keys, in one slot):
--   s:{sid}     string, value = cart birth time (ms); PEXPIREAT = the cart's deadline.
--               Its expiry is the fast trigger (keyspace event) for releasing the cart.
--   c:{sid}     hash product_id -> "inventory_id quantity". No TTL: release deletes it.
--   st:{inv}    hash p = product_id, n = name, pc = price in cents, oh = on hand (mirror
--               of the main DB), ov = the main DB's version of that on_hand, r = reserved.
--   h:{inv}     zset of holds: member "sid:quantity", score = the holding cart's deadline.
--               An admin change that lowers on_hand holds its units first as member
--               "admin-<request>:quantity" (see cartd_admin_hold).
--   dl          zset sid -> deadline: the sweeper's index of carts.
--   dirty       set of inventory ids whose r changed since the DB writer last looked.
--   cart-events stream of released carts (expired, abandoned, checked_out).
--   co:{sid}    hash key, attempt, lines (JSON), started: a checkout in progress (see
--               checkout.lua).
--   checkouts   zset sid -> start time (ms): checkouts in progress, for recovery.
--   ck:{sid}    string "idempotency_key order_id": a finished checkout (kept DONE_TTL_MS).
--   pd:{inv}    zset of changes under way whose units the main DB may already have
--               removed while their holds still count here: member = the checkout's
--               sid or the admin hold's member, score = when it lapses. While one is
--               there, the mirror sync leaves the row's on_hand alone (see
--               mirror_on_hand).
--   g:{sid}     string, the reason a cart ended (expired | abandoned), kept GONE_TTL_MS, so
--               an old id answers "gone" rather than "unknown".
--
-- The invariant every function keeps: st:{inv}.r == sum of the quantities of the members
-- of h:{inv}. A hold's units are returned exactly when its member is removed, so
-- removing a member twice (two instances, a replayed event) returns nothing the
-- second time.
--
-- These functions reach keys they compute from ids, so the library runs on standalone
-- Redis; see DESIGN.md for the Redis Cluster split.

local DEADLINES = 'dl'
local DIRTY = 'dirty'
local EVENTS = 'cart-events'
local EVENTS_MAXLEN = '100000'
local EXPIRE_BATCH = 1000
local CHECKOUTS = 'checkouts'
local GONE_TTL_MS = 3600 * 1000
local DONE_TTL_MS = 24 * 3600 * 1000

local function session_key(sid) return 's:{' .. sid .. '}' end
local function cart_key(sid) return 'c:{' .. sid .. '}' end
local function stock_key(inv) return 'st:{' .. inv .. '}' end
local function holds_key(inv) return 'h:{' .. inv .. '}' end
local function checkout_key(sid) return 'co:{' .. sid .. '}' end
local function done_key(sid) return 'ck:{' .. sid .. '}' end
local function gone_key(sid) return 'g:{' .. sid .. '}' end
local function pending_key(inv) return 'pd:{' .. inv .. '}' end

-- Server time in milliseconds: every deadline is compared against Redis' own clock,
-- so cartd instances with skewed clocks still agree on what has expired.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function hold_member(sid, qty) return sid .. ':' .. qty end

local function hold_quantity(member)
  return tonumber(string.match(member, ':(%d+)$'))
end

-- A cart line is stored as "inventory_id quantity".
local function parse_line(value)
  local inv, qty = string.match(value, '^(%S+) (%d+)$')
  return inv, tonumber(qty)
end

local function adjust_reserved(inv, delta)
  redis.call('HINCRBY', stock_key(inv), 'r', delta)
  redis.call('SADD', DIRTY, inv)
end

-- Removes one hold and returns its units; a hold that is already gone returns nothing.
local function unhold_member(inv, member)
  if redis.call('ZREM', holds_key(inv), member) == 1 then
    adjust_reserved(inv, -hold_quantity(member))
    return true
  end
  return false
end

local function unhold(inv, sid, qty)
  return unhold_member(inv, hold_member(sid, qty))
end

-- A change under way on a row: its holds still count here, and the main DB may already
-- have removed its units. Marked when the change begins, cleared by the step that drops
-- its holds and lowers on_hand at once; it lapses at `deadline` if that never runs.
local function mark_pending(inv, member, deadline)
  redis.call('ZADD', pending_key(inv), deadline, member)
end

local function clear_pending(inv, member)
  redis.call('ZREM', pending_key(inv), member)
end

local function has_pending(inv, now)
  local key = pending_key(inv)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. now)
  return redis.call('ZCARD', key) > 0
end

-- Takes a row's on_hand from the main DB unless the mirror has a newer one (true if it
-- changed the mirror). Versions
-- order the writes, so a late write (a slow checkout, recovery after a kill, a second
-- instance) never undoes a newer one, and writing the same version twice is harmless.
-- A `careful` write (the mirror sync, the start-up mirror) also leaves a row alone while
-- a change is under way on it: the DB's count may already lack units whose holds still
-- count here, and taking it would subtract them twice. The step that ends the change
-- writes the row itself.
local function mirror_on_hand(inv, on_hand, version, careful)
  if careful and has_pending(inv, now_ms()) then return false end
  local row = redis.call('HMGET', stock_key(inv), 'oh', 'ov')
  local have = tonumber(row[2] or -1)
  if version < have then return false end
  if version == have and tonumber(row[1]) == on_hand then return false end  -- nothing new
  redis.call('HSET', stock_key(inv), 'oh', on_hand, 'ov', version)
  redis.call('SADD', DIRTY, inv)
  return true
end

-- Logical expiry: drops every hold of one stock row whose deadline is before now, so
-- the units count as available at the deadline whether or not anything else ran.
-- A key whose deadline equals now is still live in Redis, so "before" is strict.
-- Returns how many units it returned.
local function drop_expired(inv, now)
  local key = holds_key(inv)
  local returned = 0
  while true do
    local expired = redis.call('ZRANGE', key, '-inf', '(' .. now, 'BYSCORE', 'LIMIT', 0, EXPIRE_BATCH)
    if #expired == 0 then break end
    local total = 0
    for _, member in ipairs(expired) do total = total + hold_quantity(member) end
    redis.call('ZREM', key, unpack(expired))
    adjust_reserved(inv, -total)
    returned = returned + total
    if #expired < EXPIRE_BATCH then break end
  end
  return returned
end

-- A live cart as every cart reply shows it:
--   {deadline_ms, product_id, inventory_id, quantity, name, unit_price_cents, ...}
-- or nil when the cart is unknown or expired.
local function cart_view(sid)
  local deadline = redis.call('PEXPIRETIME', session_key(sid))
  if deadline < 0 then return nil end
  local out = {deadline}
  local fields = redis.call('HGETALL', cart_key(sid))
  for i = 1, #fields, 2 do
    local inv, qty = parse_line(fields[i + 1])
    local info = redis.call('HMGET', stock_key(inv), 'n', 'pc')
    table.insert(out, fields[i])
    table.insert(out, inv)
    table.insert(out, qty)
    table.insert(out, info[1] or '')
    table.insert(out, tonumber(info[2] or 0))
  end
  return out
end

-- Why there is no live cart for sid: 'expired' if it existed (it ended, or its session
-- expired and it awaits release), else 'unknown'.
local function missing_cart(sid)
  if redis.call('EXISTS', gone_key(sid)) == 1 or redis.call('EXISTS', cart_key(sid)) == 1 then
    return 'expired'
  end
  return 'unknown'
end

-- set_line.lua: cartd_set_line sets (or adds to) one cart line and holds exactly the
-- difference in stock, all or nothing. It creates the cart's session when asked to.
--
-- KEYS: none (computed: s:{sid}, c:{sid}, st:{inv}, h:{inv} of the line's old and new
--       inventory rows and of every other line, whose hold deadlines slide with the cart)
-- ARGV[1]  session id from the request, or "" when there is none
-- ARGV[2]  id for a new session if ARGV[1] is not a live cart, or "" to refuse (-> no_cart)
-- ARGV[3]  product_id
-- ARGV[4]  inventory_id (ignored when the new quantity is 0)
-- ARGV[5]  quantity, >= 0; with "set", 0 removes the line
-- ARGV[6]  "set" (line := quantity) or "add" (line := line + quantity)
-- ARGV[7]  cart TTL in ms (sliding: every change restarts it)
-- ARGV[8]  maximum cart lifetime in ms (caps the sliding deadline)
-- ARGV[9]  maximum lines per cart
-- ARGV[10] maximum quantity per line
-- ARGV[11] "view" to have the whole cart in the answer (the /v1 routes), else ""
-- Returns one of
--   {'ok', sid, created (0|1), deadline_ms, line_quantity, dropped[, cart_view]}
--   {'insufficient', available, dropped}  {'unknown_inventory'}
--   {'product_mismatch', product_id}   {'too_many_lines', max}
--   {'quantity_limit', max}            {'no_cart', 'expired' | 'unknown'}
--   {'checkout_in_progress'}
-- Nothing is written unless the answer is 'ok' (dropping expired holds aside, which
-- changes no availability). dropped: the units of expired holds this call dropped from
-- the line's stock row (logical expiry; counted by the metrics).
local function set_line(keys, args)
  local now = now_ms()
  local sid, pid, inv = args[1], args[3], args[4]
  local qty, mode = tonumber(args[5]), args[6]
  local ttl, max_life = tonumber(args[7]), tonumber(args[8])
  local max_lines, max_qty = tonumber(args[9]), tonumber(args[10])

  local born = sid ~= '' and redis.call('GET', session_key(sid))
  local created = not born
  if created then
    if args[2] == '' then return {'no_cart', missing_cart(sid)} end
    sid, born = args[2], now
  else
    born = tonumber(born)
  end

  if redis.call('EXISTS', checkout_key(sid)) == 1 then return {'checkout_in_progress'} end
  local ck = cart_key(sid)
  local old = redis.call('HGET', ck, pid)
  local old_inv, old_qty = nil, 0
  if old then old_inv, old_qty = parse_line(old) end
  if mode == 'add' then qty = qty + old_qty end
  if qty > max_qty then return {'quantity_limit', max_qty} end

  local dropped = 0
  if qty > 0 then
    local row = redis.call('HMGET', stock_key(inv), 'p', 'oh', 'r')
    if not row[1] then return {'unknown_inventory'} end
    if row[1] ~= pid then return {'product_mismatch', row[1]} end
    if not old and redis.call('HLEN', ck) >= max_lines then return {'too_many_lines', max_lines} end
    dropped = drop_expired(inv, now)
    local reserved = tonumber(row[3] or 0) - dropped
    local available = tonumber(row[2]) - reserved
    local own = 0
    if old_inv == inv and redis.call('ZSCORE', holds_key(inv), hold_member(sid, old_qty)) then
      own = old_qty
    end
    if qty - own > available then return {'insufficient', math.max(available, 0), dropped} end
  end

  -- Move the hold; reserved changes once per row, by the net difference.
  local deadline = math.min(now + ttl, born + max_life)
  local delta = {}
  if old and redis.call('ZREM', holds_key(old_inv), hold_member(sid, old_qty)) == 1 then
    delta[old_inv] = -old_qty
  end
  if qty > 0 then
    redis.call('ZADD', holds_key(inv), deadline, hold_member(sid, qty))
    delta[inv] = (delta[inv] or 0) + qty
    redis.call('HSET', ck, pid, inv .. ' ' .. qty)
  elseif old then
    redis.call('HDEL', ck, pid)
  end
  for row, change in pairs(delta) do
    if change ~= 0 then adjust_reserved(row, change) end
  end

  -- Every change restarts the cart's TTL, and its holds' deadlines move with it.
  local lines = redis.call('HGETALL', ck)
  for i = 1, #lines, 2 do
    if lines[i] ~= pid then
      local line_inv, line_qty = parse_line(lines[i + 1])
      redis.call('ZADD', holds_key(line_inv), 'XX', deadline, hold_member(sid, line_qty))
    end
  end
  if created then
    redis.call('SET', session_key(sid), born, 'PXAT', deadline)
  else
    redis.call('PEXPIREAT', session_key(sid), deadline)
  end
  redis.call('ZADD', DEADLINES, deadline, sid)
  local reply = {'ok', sid, created and 1 or 0, deadline, qty, dropped}
  if args[11] == 'view' then table.insert(reply, cart_view(sid)) end
  return reply
end

redis.register_function('cartd_set_line', set_line)

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
-- ARGV[1] session id  ARGV[2] idempotency key  ARGV[3] grace in ms (holds kept at least so long)
-- ARGV[4] a new attempt id (used if this call begins a checkout)
-- Returns one of
--   {'begun', lines_json, attempt}
--   {'resume', lines_json, attempt}   (same key, checkout in progress)
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
  local co = redis.call('HMGET', checkout_key(sid), 'key', 'lines', 'attempt')
  if co[1] then
    if co[1] ~= key then return {'conflict', ''} end
    return {'resume', co[2], co[3] or attempt_of(sid, co[1])}
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
    mark_pending(inv, sid, deadline)
  end
  redis.call('PEXPIREAT', session_key(sid), deadline, 'GT')
  redis.call('ZADD', DEADLINES, 'GT', deadline, sid)
  local json = cjson.encode(lines)
  redis.call('HSET', checkout_key(sid), 'key', key, 'attempt', args[4], 'lines', json,
             'started', now)
  redis.call('ZADD', CHECKOUTS, now, sid)
  return {'begun', json, args[4]}
end

-- cartd_checkout_finish: the order is in the main DB; make Redis agree. Works whether
-- or not the checkout marker is still there (recovery may settle a cart that expired).
-- ARGV[1] session id  ARGV[2] idempotency key  ARGV[3] order id
-- ARGV[4] JSON [{inventory_id, quantity, on_hand, version}]: the order's lines, with
--         each row's on_hand in the main DB after the order and its version (the mirror
--         takes it unless it has a newer one)
-- Returns {'finished', units}: units = the held units this call dropped (sold now), or
-- {'done'} when it had finished already.
local function checkout_finish(keys, args)
  local sid, key, order_id = args[1], args[2], args[3]
  if redis.call('EXISTS', done_key(sid)) == 1 then return {'done'} end
  -- The cart's holds go with it, whatever their quantity now: had its lines changed
  -- since the order was drafted, a hold of the new quantity must not be orphaned.
  local fields = redis.call('HGETALL', cart_key(sid))
  local units = 0
  for i = 1, #fields, 2 do
    local inv, qty = parse_line(fields[i + 1])
    if unhold(inv, sid, qty) then units = units + qty end
    clear_pending(inv, sid)
  end
  local lines = {}
  for _, l in ipairs(cjson.decode(args[4])) do
    if unhold(l.inventory_id, sid, l.quantity) then units = units + l.quantity end
    clear_pending(l.inventory_id, sid)
    if l.version then mirror_on_hand(l.inventory_id, l.on_hand, l.version) end
    table.insert(lines, {inventory_id = l.inventory_id, quantity = l.quantity})
  end
  redis.call('DEL', cart_key(sid), session_key(sid), checkout_key(sid))
  redis.call('ZREM', DEADLINES, sid)
  redis.call('ZREM', CHECKOUTS, sid)
  redis.call('SET', done_key(sid), key .. ' ' .. order_id, 'PX', DONE_TTL_MS)
  redis.call('XADD', EVENTS, 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'type', 'checked_out', 'cart', sid,
             'lines', cjson.encode(lines), 'order', order_id)
  return {'finished', units}
end

-- cartd_checkout_abort: gives up a checkout that made no order; the cart lives on.
-- ARGV[1] session id  ARGV[2] idempotency key  ARGV[3] attempt id
-- ARGV[4] JSON [{inventory_id, on_hand, version}]: rows whose on_hand the mirror takes
--         (versioned) in the same step, when the DB refused the order for lack of units
-- Returns 1 if there was such a checkout.
local function checkout_abort(keys, args)
  local sid = args[1]
  for _, r in ipairs(cjson.decode(args[4] or '[]')) do
    if redis.call('EXISTS', stock_key(r.inventory_id)) == 1 then
      mirror_on_hand(r.inventory_id, r.on_hand, r.version)
    end
  end
  local co = redis.call('HMGET', checkout_key(sid), 'key', 'attempt', 'lines')
  if co[1] ~= args[2] or (co[2] or attempt_of(sid, co[1])) ~= args[3] then return 0 end
  for _, l in ipairs(cjson.decode(co[3])) do clear_pending(l.inventory_id, sid) end
  redis.call('DEL', checkout_key(sid))
  redis.call('ZREM', CHECKOUTS, sid)
  return 1
end

-- cartd_checkouts_stale: checkouts begun before now - ARGV[1] ms, at most ARGV[2].
-- Returns {sid, key, attempt, ...}.
local function checkouts_stale(keys, args)
  local before = now_ms() - tonumber(args[1])
  local out = {}
  for _, sid in ipairs(redis.call('ZRANGE', CHECKOUTS, '-inf', before, 'BYSCORE', 'LIMIT', 0,
                                  tonumber(args[2]))) do
    local co = redis.call('HMGET', checkout_key(sid), 'key', 'attempt')
    if co[1] then
      table.insert(out, sid)
      table.insert(out, co[1])
      table.insert(out, co[2] or attempt_of(sid, co[1]))
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

