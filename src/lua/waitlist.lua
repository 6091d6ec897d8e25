-- waitlist.lua: a fair, first-come-first-served waitlist per stock row. While carts wait,
-- units that come back go to the head of the queue as offers held for a claim window
-- (pour, in holds.lua); a cart claims its offer with an ordinary line change (set_line).

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
  local ck, sid, inv = keys[1], args[1], args[2]
  local qty, window, max_qty = tonumber(args[3]), tonumber(args[4]), tonumber(args[5])
  local row = redis.call('HMGET', keys[2], 'p', 'oh', 'r', 'e', 'mx')
  if not row[1] then return {'unknown_inventory'} end
  if qty > max_qty then return {'quantity_limit', max_qty} end
  if row[5] and qty > tonumber(row[5]) then return {'limit_exceeded', tonumber(row[5])} end
  local dropped, _, offered = drop_expired(inv, now, row[4])
  local q, d = live_offer(inv, sid, now)
  if q then return {'offered', q, d} end
  local available = tonumber(row[2]) - (tonumber(row[3] or 0) - dropped + offered)
  if available > 0 then return {'available', available} end
  if not live_deadline(ck, now) then return {'no_cart', missing_cart(sid)} end
  if redis.call('HEXISTS', ck, CHECKING_OUT) == 1 then return {'checkout_in_progress'} end
  -- What it waits for comes on top of its line: both within the per-cart limit.
  if row[5] and line_on_row(ck, row[1], inv) + qty > tonumber(row[5]) then
    return {'limit_exceeded', tonumber(row[5])}
  end
  local wl = waitlist_key(inv)
  local joined = 0
  if not redis.call('ZSCORE', wl, sid) then
    -- A cart waits on a bounded number of rows (every view of it reads them all). Marks
    -- whose place and offer are both gone (an offer lapsed) are dropped first.
    local waiting = 0
    for _, f in ipairs(redis.call('HKEYS', ck)) do
      if string.byte(f, 1) == 63 then
        local other = string.sub(f, 2)
        if redis.call('ZSCORE', waitlist_key(other), sid) or
            redis.call('HEXISTS', offers_key(other), sid) == 1 then
          waiting = waiting + 1
        else
          redis.call('HDEL', ck, f)
        end
      end
    end
    if waiting >= tonumber(args[6]) then return {'too_many_waits', tonumber(args[6])} end
    redis.call('ZADD', wl, redis.call('HINCRBY', keys[2], 'ws', 1), sid)
    redis.call('HSET', ck, WAITS .. inv, 1)
    joined = 1
  end
  redis.call('HSET', wanted_key(inv), sid, qty .. ' ' .. window)
  redis.call('HINCRBY', keys[2], 'wv', 1)
  return {'waiting', redis.call('ZRANK', wl, sid) + 1, joined}
end

-- cartd_leave: a cart leaves a row's waitlist, giving up its offer there if it has one.
-- KEYS[1] the cart  KEYS[2] the row   ARGV[1] session id  ARGV[2] inventory_id
-- Returns {'left', released offer units} or {'not_waiting'}.
local function leave(keys, args)
  local now = now_ms()
  local sid, inv = args[1], args[2]
  local known = redis.call('ZSCORE', waitlist_key(inv), sid) or
                    redis.call('HEXISTS', offers_key(inv), sid) == 1
  if redis.call('EXISTS', keys[1]) == 1 then redis.call('HDEL', keys[1], WAITS .. inv) end
  if not known then return {'not_waiting'} end
  return {'left', leave_row(inv, sid, now)}
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
