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
