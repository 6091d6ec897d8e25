-- migrate.lua: moves the data of layout 1 (cartd 0.4 and before: s:{sid}, c:{sid},
-- h:{inv}, st:{inv}, ... and the global dl, dirty, checkouts) into layout 2, one cart or
-- one stock row per call, atomically: each call deletes the old keys it converted, so a
-- call repeated (two instances, a migration resumed after a crash) does nothing more.
-- Carts go first (their holds leave h:{inv} with them), then rows (what is left in
-- h:{inv}: admin holds, and holds whose cart is gone). src/functions/migrate.cpp drives
-- it, under a lock, before any request is served. Layout 1 only ran on standalone Redis,
-- so these functions reach the old keys by name (no KEYS).

-- Copies a string key to `to` with the TTL it has left, then deletes it.
local function move_string(from, to)
  local value = redis.call('GET', from)
  if not value then return end
  local ttl = redis.call('PTTL', from)
  if ttl > 0 then
    redis.call('SET', to, value, 'PX', ttl)
  else
    redis.call('SET', to, value)
  end
  redis.call('DEL', from)
end

-- cartd_migrate_cart: one cart of layout 1 (any of its keys may be missing).
-- ARGV[1] session id.  Returns {migrated (0|1), units held}: 1 if a live cart moved.
local function migrate_cart(keys, args)
  local sid = args[1]
  local now = now_ms()
  local old_session, old_cart, old_co = 's:{' .. sid .. '}', 'c:{' .. sid .. '}', 'co:{' .. sid .. '}'
  local born = redis.call('GET', old_session)
  local deadline = redis.call('PEXPIRETIME', old_session)
  local fields = redis.call('HGETALL', old_cart)
  local co = redis.call('HGETALL', old_co)
  local migrated, units = 0, 0
  local ck = cart_key(sid)
  if born and deadline >= now then
    redis.call('HSET', ck, BIRTH, born)
    for i = 1, #fields, 2 do
      local inv, qty = parse_line(fields[i + 1])
      -- The line's hold moves to the row's bucket of the cart's deadline. A hold that
      -- is not there, or has ended (layout 1 dropped them lazily), holds nothing now
      -- either, and neither may the line: layout 2 holds every line of a live cart in
      -- its deadline's bucket, and moves or returns exactly its quantity from there (a
      -- line without its hold would drive the bucket, and r, below zero).
      local hold = 'h:{' .. inv .. '}'
      local member = sid .. ':' .. qty
      local until_ms = redis.call('ZSCORE', hold, member)
      if until_ms and redis.call('ZREM', hold, member) == 1 and tonumber(until_ms) >= now then
        redis.call('HSET', ck, fields[i], fields[i + 1])
        add_hold(inv, deadline, qty, false)
        units = units + qty
      end
    end
    if #co > 0 then redis.call('HSET', ck, CHECKING_OUT, 1) end
    redis.call('PEXPIREAT', ck, deadline)
    migrated = 1
  elseif #fields > 0 then
    -- Its session ended before it was released: it expired.
    redis.call('SET', gone_key(sid), 'expired', 'NX', 'PX', GONE_TTL_MS)
  end
  -- A checkout in progress moves whether or not its cart is still live: the main DB may
  -- hold its order (the older cartd died between writing it and settling Redis), and
  -- recovery settles it from the checkout index, as it does a layout-2 cart that expired
  -- during its checkout.
  if #co > 0 then
    redis.call('HSET', checkout_key(sid), unpack(co))
    local started = redis.call('HGET', old_co, 'started') or now
    redis.call('ZADD', checkouts_key(sid), started, sid)
  end
  move_string('ck:{' .. sid .. '}', done_key(sid))
  move_string('g:{' .. sid .. '}', gone_key(sid))
  redis.call('DEL', old_session, old_cart, old_co)
  redis.call('ZREM', 'dl', sid)
  redis.call('ZREM', 'checkouts', sid)
  return {migrated, units}
end

-- cartd_migrate_row: one stock row of layout 1, after its carts.
-- ARGV[1] inventory_id.  Returns the units of the holds it moved without a cart.
local function migrate_row(keys, args)
  local inv = args[1]
  local now = now_ms()
  local old_row, old_holds, old_pending = 'st:{' .. inv .. '}', 'h:{' .. inv .. '}', 'pd:{' .. inv .. '}'
  local row = redis.call('HMGET', old_row, 'p', 'n', 'pc', 'oh', 'ov')
  local units = 0
  if row[1] then
    redis.call('HSET', stock_key(inv), 'p', row[1], 'n', row[2] or '', 'pc', row[3] or 0,
               'oh', row[4] or 0, 'ov', row[5] or 0)
    redis.call('HSETNX', stock_key(inv), 'r', 0)
    -- Holds left: admin changes, and carts that are gone; each keeps its deadline.
    local holds = redis.call('ZRANGE', old_holds, now, '+inf', 'BYSCORE', 'WITHSCORES')
    for i = 1, #holds, 2 do
      local qty = tonumber(string.match(holds[i], ':(%d+)$'))
      add_hold(inv, tonumber(holds[i + 1]), qty, false)
      units = units + qty
    end
    local pending = redis.call('ZRANGE', old_pending, now, '+inf', 'BYSCORE', 'WITHSCORES')
    for i = 1, #pending, 2 do
      redis.call('ZADD', pending_key(inv), pending[i + 1], pending[i])
    end
    mark_dirty(inv)
  end
  redis.call('DEL', old_row, old_holds, old_pending)
  redis.call('SREM', 'dirty', inv)
  return units
end

redis.register_function('cartd_migrate_cart', migrate_cart)
redis.register_function('cartd_migrate_row', migrate_row)

-- cartd_layout: what every cartd connection asks before it serves. Returns '2' when
-- Redis holds layout 2 (or nothing yet: it is marked layout 2 then), or 'old' when an
-- older cartd's data is here and must be migrated first.
local function layout(keys, args)
  if redis.call('GET', 'cartd:layout') == '2' then return '2' end
  if redis.call('EXISTS', 'cartd:mirrored', 'dl', 'dirty', 'checkouts') > 0 then return 'old' end
  redis.call('SET', 'cartd:layout', '2')
  return '2'
end

redis.register_function('cartd_layout', layout)
