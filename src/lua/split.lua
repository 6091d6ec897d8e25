-- split.lua: the line change in steps of one slot each, for a Redis Cluster, where a
-- cart and its stock rows live on different nodes (docs/DESIGN.md, "Redis Cluster").
-- cartd_set_line does the whole change in one atomic call on a standalone Redis; a
-- cluster refuses a call whose keys span slots, so there the change is three steps,
-- each safe to repeat, driven by src/cart/split_line.cpp:
--
--   1. cartd_line_begin (the cart's slot) locks the cart for this change, with a lease,
--      and answers its lines, deadline and Redis' clock;
--   2. cartd_hold (each row's slot) sets the cart's hold on the row to "q units until d".
--      The row keeps the cart's record ({s<n>}hc:<inv>), so the step has set semantics:
--      a repeat, or a repair, changes nothing more. The line's own row goes first (it
--      may refuse); the rows of the cart's other lines follow when the deadline moves;
--   3. cartd_line_commit (the cart's slot) writes the line and the deadline, and
--      unlocks; cartd_line_release unlocks after a refusal.
--
-- Rows are written before the cart, so a change cut short (cartd killed between steps)
-- leaves a row holding more than the cart says, for at most its record's deadline: a
-- unit kept from sale for a while, never a unit sold twice. The next change of that cart
-- finds the lapsed lock and sets every row the cut-short change may have touched back
-- to what the cart says. The lease outlasts every step's timeout, so a change in
-- progress keeps its lock; a second change of the same cart meanwhile is told 'busy'
-- (the caller waits a little and tries again).
--
--   {s<n>}hc:<inv>   hash sid -> "quantity deadline": each cart's hold on the row, as the
--                    row knows it (a record whose deadline has passed holds nothing).
--   {s<n>}hx:<inv>   zset sid -> deadline: the same records by deadline, so the holds
--                    that lapse are forgotten with their bucket (drop_expired).
--   cart field '~'   "change lease_until_ms inventory_id": the change under way.

-- cartd_hold: sets a cart's hold on one stock row, all or nothing.
-- KEYS[1]  the stock row ({s<n>}:<inv>)
-- ARGV[1]  inventory_id   ARGV[2] session id   ARGV[3] product_id
-- ARGV[4]  quantity, >= 0 (0: the cart holds nothing here)
-- ARGV[5]  deadline ms (the cart's; ignored with quantity 0)
-- Returns {'ok', dropped, name, unit_price_cents}, or, only when the hold grows:
--   {'insufficient', available, dropped, waitlisted 0|1}  {'unknown_inventory'}
--   {'product_mismatch', product_id}  {'limit_exceeded', max_per_cart}
-- A hold that stays or shrinks is always taken. Growing it claims the cart's offer on
-- the row first (see cartd_set_line), then needs the rest available.
local function hold(keys, args)
  local now = now_ms()
  local key, inv, sid, pid = keys[1], args[1], args[2], args[3]
  local qty, deadline = tonumber(args[4]), tonumber(args[5])
  local row = redis.call('HMGET', key, 'p', 'oh', 'r', 'e', 'mx', 'wv', 'n', 'pc')
  if not row[1] and qty > 0 then return {'unknown_inventory'} end
  local dropped, _, offered = drop_expired(inv, now, row[4])
  local q0, d0 = hold_record(inv, sid, now)
  local claim = nil
  if qty > q0 then
    if row[1] ~= pid then return {'product_mismatch', row[1]} end
    if row[5] and qty > tonumber(row[5]) then return {'limit_exceeded', tonumber(row[5])} end
    local available = tonumber(row[2]) - (tonumber(row[3] or 0) - dropped + offered)
    if row[6] then
      local q, d = live_offer(inv, sid, now)
      if q then claim = {q, d} end
    end
    if qty - q0 > available + (claim and claim[1] or 0) then
      local waited = redis.call('EXISTS', waitlist_key(inv), offers_key(inv)) > 0
      return {'insufficient', math.max(available, 0), dropped, waited and 1 or 0}
    end
  end
  local reply = {'ok', dropped, row[7] or '', tonumber(row[8] or 0)}
  if qty == q0 and (qty == 0 or deadline == d0) then return reply end  -- a repeat
  if claim then
    add_hold(inv, claim[2], -claim[1])
    redis.call('HDEL', offers_key(inv), sid)
    redis.call('HINCRBY', key, 'wv', 1)
  end
  if q0 > 0 then add_hold(inv, d0, -q0) end
  local hc, hx = hold_records_key(inv), hold_deadlines_key(inv)
  if qty > 0 then
    add_hold(inv, deadline, qty, false)
    redis.call('HSET', hc, sid, qty .. ' ' .. deadline)
    redis.call('ZADD', hx, deadline, sid)
  else
    redis.call('HDEL', hc, sid)
    redis.call('ZREM', hx, sid)
  end
  if qty < q0 or claim then pour(inv, now) end
  return reply
end

-- The change under way on a cart, from its '~' field: its id, lease end and row.
local function parse_lock(value)
  local op, until_ms, inv = string.match(value or '', '^(%S+) (%d+) (%S*)$')
  if not op then return nil end
  return op, tonumber(until_ms), inv
end

-- cartd_line_begin: locks a live cart for one line change.
-- KEYS[1]  the cart
-- ARGV[1]  session id   ARGV[2] the change's id   ARGV[3] lease ms
-- ARGV[4]  the inventory_id the change will hold (recorded for a repair)
-- ARGV[5]  "1": a cart that is not live may be made anew (-> 'new')
-- Returns one of
--   {'locked', now_ms, birth_ms, deadline_ms, stale_inventory_id, pid, inv, qty, ...}
--      (stale_inventory_id: the row of a change that lapsed unfinished, else '')
--   {'new', now_ms}   {'busy'}   {'checkout_in_progress'}
--   {'no_cart', 'expired' | 'unknown' | 'checked_out'}
local function line_begin(keys, args)
  local now = now_ms()
  local ck, sid = keys[1], args[1]
  local deadline = live_deadline(ck, now)
  if not deadline then
    if args[5] == '1' then return {'new', now} end
    return {'no_cart', missing_cart(sid)}
  end
  local fields = redis.call('HGETALL', ck)
  local cart = {}
  for i = 1, #fields, 2 do cart[fields[i]] = fields[i + 1] end
  if cart[CHECKING_OUT] then return {'checkout_in_progress'} end
  local stale = ''
  local _, until_ms, inv = parse_lock(cart[LOCK])
  if until_ms then
    if until_ms >= now then return {'busy'} end
    stale = inv
  end
  redis.call('HSET', ck, LOCK, args[2] .. ' ' .. (now + tonumber(args[3])) .. ' ' .. args[4])
  local out = {'locked', now, tonumber(cart[BIRTH]), deadline, stale}
  for _, l in ipairs(cart_lines(fields)) do
    table.insert(out, l[1])
    table.insert(out, l[2])
    table.insert(out, l[3])
  end
  return out
end

-- cartd_line_commit: writes the line a change held, and ends the change.
-- KEYS[1]  the cart
-- ARGV[1]  the change's id   ARGV[2] product_id   ARGV[3] inventory_id
-- ARGV[4]  quantity (0 removes the line)   ARGV[5] the cart's deadline ms
-- ARGV[6]  "new": the change made the cart (born at ARGV[7]); else it holds the lock
-- Returns {'ok'}, or {'lost', 'gone'} (the cart ended meanwhile, or a new cart's id is
-- taken) or {'lost', 'taken'} (the lock lapsed and another change took it).
local function line_commit(keys, args)
  local now = now_ms()
  local ck, pid, inv, qty, deadline = keys[1], args[2], args[3], tonumber(args[4]), args[5]
  if args[6] == 'new' then
    if redis.call('EXISTS', ck) == 1 then return {'lost', 'gone'} end
    redis.call('HSET', ck, BIRTH, args[7])
  else
    if not live_deadline(ck, now) then return {'lost', 'gone'} end
    local op = parse_lock(redis.call('HGET', ck, LOCK))
    if op ~= args[1] then return {'lost', 'taken'} end
    redis.call('HDEL', ck, LOCK)
  end
  if qty > 0 then
    redis.call('HSET', ck, pid, inv .. ' ' .. qty)
  else
    redis.call('HDEL', ck, pid)
  end
  if redis.call('PEXPIRETIME', ck) ~= tonumber(deadline) then
    redis.call('PEXPIREAT', ck, deadline)
  end
  return {'ok'}
end

-- cartd_line_release: ends a change that wrote nothing to the cart (its row refused).
-- KEYS[1] the cart   ARGV[1] the change's id.   Returns 1 if the lock was this change's.
local function line_release(keys, args)
  local op = parse_lock(redis.call('HGET', keys[1], LOCK))
  if op ~= args[1] then return 0 end
  redis.call('HDEL', keys[1], LOCK)
  return 1
end

-- cartd_cart_lines: a live cart's lines, from its own slot (names and prices are read
-- from the rows' slots after).
-- KEYS[1] the cart   ARGV[1] session id
-- Returns {deadline_ms, product_id, inventory_id, quantity, ...}, or 'expired' /
-- 'unknown' / 'checked_out' (see missing_cart).
local function cart_lines_of(keys, args)
  local deadline = live_deadline(keys[1], now_ms())
  if not deadline then return missing_cart(args[1]) end
  local out = {deadline}
  for _, l in ipairs(cart_lines(redis.call('HGETALL', keys[1]))) do
    table.insert(out, l[1])
    table.insert(out, l[2])
    table.insert(out, l[3])
  end
  return out
end

redis.register_function('cartd_hold', hold)
redis.register_function('cartd_line_begin', line_begin)
redis.register_function('cartd_line_commit', line_commit)
redis.register_function('cartd_line_release', line_release)
redis.register_function{function_name = 'cartd_cart_lines', callback = cart_lines_of,
                        flags = {'no-writes'}}
