-- waitlist.lua: a fair, first-come-first-served waitlist per stock row. While carts wait,
-- units that come back go to the head of the queue as offers held for a claim window
-- (pour, in holds.lua); a cart claims its offer with an ordinary line change (set_line).

-- The row's checks of a wait, before the cart's: a reply that ends the wait
-- ('unknown_inventory', 'quantity_limit', 'limit_exceeded', 'offered': the cart holds an
-- offer here, 'available': units are free), or nil, the row's per-cart limit (nil for
-- none) and its product_id.
local function row_refuses_wait(inv, sid, qty, max_qty, now)
  local row = redis.call('HMGET', stock_key(inv), 'p', 'oh', 'r', 'e', 'mx')
  if not row[1] then return {'unknown_inventory'} end
  if qty > max_qty then return {'quantity_limit', max_qty} end
  local mx = row[5] and tonumber(row[5])
  if mx and qty > mx then return {'limit_exceeded', mx} end
  local dropped, _, offered = drop_expired(inv, now, row[4])
  local q, d = live_offer(inv, sid, now)
  if q then return {'offered', q, d} end
  local available = tonumber(row[2]) - (tonumber(row[3] or 0) - dropped + offered)
  if available > 0 then return {'available', available} end
  return nil, mx, row[1]
end

-- Gives a cart a place in the row's waitlist (it keeps one it has) and records what it
-- asks for; `flag` 'r' for a wait the row judges alone (a Redis Cluster: see pour).
-- Returns {'waiting', position (1 = next), joined (1 | 0)}.
local function take_place(row_key, inv, sid, qty, window, flag)
  local wl = waitlist_key(inv)
  local joined = 0
  if not redis.call('ZSCORE', wl, sid) then
    redis.call('ZADD', wl, redis.call('HINCRBY', row_key, 'ws', 1), sid)
    joined = 1
  end
  redis.call('HSET', wanted_key(inv), sid, qty .. ' ' .. window .. (flag ~= '' and ' ' .. flag or ''))
  redis.call('HINCRBY', row_key, 'wv', 1)
  return {'waiting', redis.call('ZRANK', wl, sid) + 1, joined}
end

-- cartd_wait: a cart joins a sold-out row's waitlist (or changes the quantity it waits
-- for, keeping its place).
-- KEYS[1] the cart  KEYS[2] the row
-- ARGV[1] session id  ARGV[2] inventory_id  ARGV[3] quantity  ARGV[4] offer window, ms
-- ARGV[5] maximum quantity per line  ARGV[6] most rows one cart may wait on at once
-- Returns {'waiting', position (1 = next), joined (1 | 0)}, {'available', units} (units
-- are free: add them instead), {'offered', quantity, deadline} (the cart holds an offer:
-- claim it), {'unknown_inventory'}, {'product_mismatch', product_id}, {'quantity_limit',
-- max}, {'limit_exceeded', max_per_cart}, {'too_many_waits', max}, {'no_cart', why},
-- {'checkout_in_progress'}.
local function wait(keys, args)
  local now = now_ms()
  local ck, sid, inv, qty = keys[1], args[1], args[2], tonumber(args[3])
  local refused, mx, pid = row_refuses_wait(inv, sid, qty, tonumber(args[5]), now)
  if refused then return refused end
  if not live_deadline(ck, now) then return {'no_cart', missing_cart(sid)} end
  if redis.call('HEXISTS', ck, CHECKING_OUT) == 1 then return {'checkout_in_progress'} end
  -- What it waits for comes on top of its line: both within the per-cart limit.
  if mx and line_on_row(ck, pid, inv) + qty > mx then return {'limit_exceeded', mx} end
  if not redis.call('ZSCORE', waitlist_key(inv), sid) then
    -- A cart waits on a bounded number of rows (every view of it reads them all). Marks
    -- whose place and offer are both gone (an offer lapsed) are dropped first.
    local waiting = 0
    for _, other in ipairs(marked_rows(redis.call('HGETALL', ck))) do
      if row_names(other, sid) then
        waiting = waiting + 1
      else
        redis.call('HDEL', ck, WAITS .. other)
      end
    end
    if waiting >= tonumber(args[6]) then return {'too_many_waits', tonumber(args[6])} end
    redis.call('HSET', ck, WAITS .. inv, 1)
  end
  return take_place(keys[2], inv, sid, qty, args[4], '')
end

-- cartd_leave: a cart leaves a row's waitlist, giving up its offer there if it has one.
-- KEYS[1] the cart  KEYS[2] the row   ARGV[1] session id  ARGV[2] inventory_id
-- Returns {'left', released offer units} or {'not_waiting'}.
local function leave(keys, args)
  local sid, inv = args[1], args[2]
  local known = row_names(inv, sid)
  if redis.call('EXISTS', keys[1]) == 1 then redis.call('HDEL', keys[1], WAITS .. inv) end
  if not known then return {'not_waiting'} end
  return {'left', leave_row(inv, sid, now_ms())}
end

-- The waitlist on a Redis Cluster, where the cart and the row live in different slots:
-- a wait is cartd_wait_mark (the cart) then cartd_wait_row (the row), and cartd_wait_unmark
-- (the cart) when the row refused a cart that was not marked before; a leave is
-- cartd_wait_unmark then cartd_leave_row; a view reads each marked row with
-- cartd_wait_state. src/cart/split.cpp drives them. The row keeps everything that
-- decides who gets units; the cart's marks only say which rows to read.

-- cartd_wait_mark: the cart's half of a wait: the cart is live, not checking out, and
-- waits on at most ARGV[3] rows; marks the row with this wait's token (a mark that was
-- there takes the new token: a later unmark by an earlier wait leaves it).
-- KEYS: the cart   ARGV[1] session id   ARGV[2] inventory_id
-- ARGV[3] most rows one cart may wait on   ARGV[4] the wait's token
-- ARGV[5] the cart's longest life, ms (the rows it waits on are kept in w: until then)
-- ARGV[6...] pairs inventory_id, token: marks to drop first, if they still carry that
-- token (the caller found their place and offer gone)
-- Returns {'marked', 1 | 0 (it was marked before)}, {'too_many_waits', max,
-- inventory_id, token, ...} (the marks), {'no_cart', why}, {'checkout_in_progress'}.
local function wait_mark(keys, args)
  local now = now_ms()
  local ck, sid, inv, most = keys[1], args[1], args[2], tonumber(args[3])
  if not live_deadline(ck, now) then return {'no_cart', missing_cart(sid)} end
  if redis.call('HEXISTS', ck, CHECKING_OUT) == 1 then return {'checkout_in_progress'} end
  for i = 6, #args - 1, 2 do
    if redis.call('HGET', ck, WAITS .. args[i]) == args[i + 1] then
      redis.call('HDEL', ck, WAITS .. args[i])
      redis.call('SREM', waits_key(sid), args[i])
    end
  end
  -- The marks as pairs inventory_id, token; whether this row is marked already.
  local fields, marks, was = redis.call('HGETALL', ck), {}, false
  for i = 1, #fields, 2 do
    if string.byte(fields[i], 1) == 63 then
      local row = string.sub(fields[i], 2)
      was = was or row == inv
      table.insert(marks, row)
      table.insert(marks, fields[i + 1])
    end
  end
  if not was and #marks / 2 >= most then return {'too_many_waits', most, unpack(marks)} end
  redis.call('HSET', ck, WAITS .. inv, args[4])
  if not was then
    -- The rows it waits on outlive the cart (which Redis deletes with its marks when it
    -- expires) for as long as the cart could live: its expiry leaves them.
    redis.call('SADD', waits_key(sid), inv)
    local last = math.max(tonumber(redis.call('HGET', ck, BIRTH)) + tonumber(args[5]),
                          live_deadline(ck, now))  -- a checkout's grace may keep it longer
    redis.call('PEXPIREAT', waits_key(sid), last + GONE_TTL_MS)
  end
  return {'marked', was and 0 or 1}
end

-- cartd_wait_row: the row's half of a wait, after cartd_wait_mark; the cart's line here
-- is its hold record (split.lua).
-- KEYS: the row   ARGV[1] session id   ARGV[2] inventory_id
-- ARGV[3] quantity   ARGV[4] offer window, ms   ARGV[5] maximum quantity per line
-- Returns as cartd_wait, but for the cart's refusals.
local function wait_row(keys, args)
  local now = now_ms()
  local sid, inv, qty = args[1], args[2], tonumber(args[3])
  local refused, mx = row_refuses_wait(inv, sid, qty, tonumber(args[5]), now)
  if refused then return refused end
  if mx and hold_record(inv, sid, now) + qty > mx then return {'limit_exceeded', mx} end
  return take_place(keys[1], inv, sid, qty, args[4], 'r')
end

-- cartd_wait_unmark: drops a cart's mark of a row (it left the row, or the row refused
-- the wait that set the mark).
-- KEYS: the cart   ARGV[1] session id   ARGV[2] inventory_id
-- ARGV[3] the token of the wait that set it ('' for any: a leave).   Returns 1.
local function wait_unmark(keys, args)
  local field = WAITS .. args[2]
  if args[3] == '' or redis.call('HGET', keys[1], field) == args[3] then
    redis.call('HDEL', keys[1], field)
    redis.call('SREM', waits_key(args[1]), args[2])
  end
  return 1
end

-- cartd_leave_row: the row's half of a leave (after cartd_wait_unmark), and of the end
-- of a cart that waited (abandon, checkout, expiry: split.cpp, leave_rows).
-- KEYS: the row   ARGV[1] session id   ARGV[2] inventory_id
-- Returns as cartd_leave.
local function leave_row_of(keys, args)
  local sid, inv = args[1], args[2]
  if not row_names(inv, sid) then return {'not_waiting'} end
  return {'left', leave_row(inv, sid, now_ms())}
end

-- cartd_wait_state: a cart's place or offer on one row (wait_state), or {} for none.
-- KEYS: the row   ARGV[1] session id   ARGV[2] inventory_id
local function wait_state_of(keys, args)
  return wait_state(args[2], args[1], now_ms()) or {}
end

-- cartd_waits: the waitlist places and offers of a live cart.
-- KEYS[1] the cart  ARGV[1] session id
-- Returns {deadline of the cart, waits_of...} or a missing_cart reason.
local function waits(keys, args)
  local now = now_ms()
  local deadline = live_deadline(keys[1], now)
  if not deadline then return missing_cart(args[1]) end
  local out = {deadline}
  for _, w in ipairs(waits_of(keys[1], args[1], now)) do table.insert(out, w) end
  return out
end

-- cartd_watch: what open pages see of some rows, read by each instance's poller: per
-- row {on_hand, reserved, wv, n, sid, quantity, deadline, ... (n live offers)}, or
-- {-1, -1, 0, 0} for an unknown row. Reading drops expired holds (and so makes offers),
-- like every read of a row.
-- KEYS: the rows.  ARGV: inventory ids.
local function watch(keys, args)
  local now = now_ms()
  local out = {}
  for _, inv in ipairs(args) do
    local on_hand, reserved = live_counts(inv, now)
    local version = redis.call('HGET', stock_key(inv), 'wv')
    local item = {on_hand, reserved, tonumber(version or 0), 0}
    -- A row that never had a waitlist (no wv) has no offers to read.
    if on_hand >= 0 and version then
      local offers = redis.call('HGETALL', offers_key(inv))
      for i = 1, #offers, 2 do
        local q, d = parse_pair(offers[i + 1])
        if d >= now then
          table.insert(item, offers[i])
          table.insert(item, q)
          table.insert(item, d)
          item[4] = item[4] + 1
        end
      end
    end
    table.insert(out, item)
  end
  return out
end

redis.register_function('cartd_wait', wait)
redis.register_function('cartd_leave', leave)
redis.register_function{function_name = 'cartd_waits', callback = waits, flags = {'no-writes'}}
redis.register_function('cartd_watch', watch)
redis.register_function('cartd_wait_mark', wait_mark)
redis.register_function('cartd_wait_row', wait_row)
redis.register_function('cartd_wait_unmark', wait_unmark)
redis.register_function('cartd_leave_row', leave_row_of)
redis.register_function{function_name = 'cartd_wait_state', callback = wait_state_of,
                        flags = {'no-writes'}}
