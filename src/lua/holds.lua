-- holds.lua: key names and hold bookkeeping shared by every cartd function.
--
-- Redis data model, layout 2 (docs/DESIGN.md, "The Redis data model"). Every key carries
-- the hash tag of its group: {c<n>} for carts, {s<n>} for stock rows, n = group_of(id),
-- so a group's keys and its indexes share one slot (one node of a Redis Cluster).
--
--   {c<n>}:<sid>        the cart, a hash that is also its session: '@' = birth time (ms),
--                       product_id -> "inventory_id quantity", '!' = 1 while a checkout
--                       is in progress. PEXPIREAT = the cart's deadline: Redis deletes it
--                       by itself then; nothing has to release it (see "logical expiry").
--   {c<n>}co:<sid>      hash key, attempt, lines (JSON), started: a checkout in progress.
--   {c<n>}ck:<sid>      string "idempotency_key order_id": a finished checkout (DONE_TTL_MS).
--   {c<n>}g:<sid>       string, why a cart ended (expired | abandoned), kept GONE_TTL_MS, so
--                       an old id answers "expired" rather than "unknown".
--                       A field '?<inventory_id>' marks a row whose waitlist or offers
--                       name the cart (the truth is the row's: see wl:, of:).
--   {c<n>}w:<sid>       set of the rows a cart marks, on a Redis Cluster only, kept until
--                       the cart's longest life has passed: when the cart expires (and
--                       its marks with it), the instance that records the expiry reads
--                       it to leave those rows' lines (cartd_expired).
--   {c<n>}#checkouts    zset sid -> start time: the group's checkouts in progress.
--   {c<n>}#events       stream of the group's ended carts (expired, abandoned, checked_out).
--   {s<n>}:<inv>        the stock row, a hash: p = product_id, n = name, pc = price in cents,
--                       oh = on hand (mirror of the main DB), ov = the main DB's version of
--                       that on_hand, mx = units one cart may hold (absent: no limit of
--                       its own), r = reserved, e = no bucket ends before this, and one
--                       bucket per deadline: t<deadline ms> = units held until then, summed
--                       over every cart (and admin change) with that deadline.
--   {s<n>}pd:<inv>      zset of changes under way whose units the main DB may already have
--                       removed while their holds still count here: member = the checkout's
--                       sid or the admin hold's member, score = when it lapses. While one is
--                       there, the mirror sync leaves the row's on_hand alone.
--   {s<n>}wl:<inv>      zset sid -> place: the row's waitlist, first come first served.
--   {s<n>}wq:<inv>      hash sid -> "quantity window_ms": what each waiting cart asked for.
--   {s<n>}of:<inv>      hash sid -> "quantity deadline": units offered to a cart that
--                       waited, held for it (in the bucket of the deadline) until it
--                       claims them or the deadline passes. The row's fields ws (last
--                       place given) and wv (bumped by every waitlist or offer change)
--                       exist once the row has had a waitlist.
--   {s<n>}hc:<inv>      hash sid -> "quantity deadline change", and {s<n>}hx:<inv>, zset sid ->
--                       deadline: each cart's hold on the row, kept by the line change
--                       of a Redis Cluster only (split.lua).
--   {s<n>}#dirty        set of the group's rows whose r changed since the DB writer looked.
--   {s<n>}#due          zset inv -> e: when each row of the group next has a bucket to drop.
--   cartd:mirrored      set once the stock mirror is complete; cartd:layout = "2".
--
-- A cart's holds are the units of its lines in the buckets of its deadline: moving the
-- deadline moves them, so a bucket's units all end together, exactly when their carts
-- do. Deadlines are rounded up to a quantum (about 1/100 of the TTL) so a row has about
-- a hundred buckets at most and stays a small listpack.
--
-- Logical expiry: a bucket whose deadline has passed is dropped (its units leave r) by
-- whatever touches the row next, and by the sweeper; nothing counts it as reserved in
-- between. The invariant every function keeps: st.r == the sum of the row's buckets.
--
-- Every function names in KEYS the keys it is given (FCALL numkeys); the keys of other
-- rows a cart reaches are computed from their ids with group_of, which must match
-- src/functions/keys.hpp.

local GROUPS = 1024
local EVENTS_MAXLEN = '100000'
local GONE_TTL_MS = 3600 * 1000
local DONE_TTL_MS = 24 * 3600 * 1000
local BIRTH = '@'
local CHECKING_OUT = '!'

-- The group of an id: a polynomial hash of its bytes (mod a prime, so it stays exact in
-- Lua's doubles), mod GROUPS.
local function group_of(id)
  local h = 0
  for i = 1, #id do h = (h * 31 + string.byte(id, i)) % 1000003 end
  return h % GROUPS
end

local function cart_tag(sid) return '{c' .. group_of(sid) .. '}' end
local function stock_tag(inv) return '{s' .. group_of(inv) .. '}' end
local function cart_key(sid) return cart_tag(sid) .. ':' .. sid end
local function checkout_key(sid) return cart_tag(sid) .. 'co:' .. sid end
local function done_key(sid) return cart_tag(sid) .. 'ck:' .. sid end
local function gone_key(sid) return cart_tag(sid) .. 'g:' .. sid end
local function waits_key(sid) return cart_tag(sid) .. 'w:' .. sid end
local function checkouts_key(sid) return cart_tag(sid) .. '#checkouts' end
local function events_key(sid) return cart_tag(sid) .. '#events' end
local function stock_key(inv) return stock_tag(inv) .. ':' .. inv end
local function pending_key(inv) return stock_tag(inv) .. 'pd:' .. inv end
local function dirty_key(inv) return stock_tag(inv) .. '#dirty' end
local function waitlist_key(inv) return stock_tag(inv) .. 'wl:' .. inv end
local function wanted_key(inv) return stock_tag(inv) .. 'wq:' .. inv end
local function offers_key(inv) return stock_tag(inv) .. 'of:' .. inv end
local WAITS = '?'  -- prefix of a cart's fields that mark the rows it waits on
local LOCK = '~'   -- a cart's field while a line change is under way (split.lua)
local function hold_records_key(inv) return stock_tag(inv) .. 'hc:' .. inv end
local function hold_deadlines_key(inv) return stock_tag(inv) .. 'hx:' .. inv end
local function due_key(inv) return stock_tag(inv) .. '#due' end

-- A group's housekeeping lease. With several cartd instances on a Redis Cluster, where
-- the group functions take one group per call, each group's sweep, DB-writer read and
-- checkout recovery is done by one instance at a time: the one whose lease it is (taken
-- when free, renewed by its holder each round, lapsing `ms` after its holder stops).
-- `owner` '' takes no lease (a standalone Redis: one call does every group). True when
-- `owner` may work on the group of index key `key`.
local function lease(key, owner, ms)
  if not owner or owner == '' then return true end
  local lk = key .. ':lease'
  local holder = redis.call('GET', lk)
  if holder and holder ~= owner then return false end
  redis.call('SET', lk, owner, 'PX', ms)
  return true
end

-- The indexes a group function works on: every key in KEYS on a standalone Redis (one
-- call does many groups); on a Redis Cluster, where a lease `owner` is given, the first
-- only: one group's, for the cluster client names one more key, its slot's "{tag}#absent"
-- (src/redis/cluster.hpp), which keeps any function from running while its slot moves.
local function indexes_of(keys, owner)
  if owner and owner ~= '' then return {keys[1]} end
  return keys
end

-- Server time in milliseconds: every deadline is compared against Redis' own clock,
-- so cartd instances with skewed clocks still agree on what has expired.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A deadline rounded up to the bucket quantum.
local function round_up(ms, quantum)
  return math.ceil(ms / quantum) * quantum
end

-- A cart line is stored as "inventory_id quantity", on a Redis Cluster "inventory_id
-- quantity change": the id of the line change that last set the line's hold record on
-- its row (split.lua; '' for none).
local function parse_line(value)
  local inv, qty, op = string.match(value, '^(%S+) (%d+) ?(%S*)$')
  return inv, tonumber(qty), op
end

-- The cart's deadline if it is live at `now`, else nil. A key whose deadline equals now
-- is still live in Redis, so a cart is live while deadline >= now; and a cart Redis has
-- not deleted yet (its clock inside a script is the script's start) is not live once
-- its deadline is past.
local function live_deadline(ck, now)
  local deadline = redis.call('PEXPIRETIME', ck)
  if deadline < now then return nil end
  return deadline
end

local function mark_dirty(inv)
  redis.call('SADD', dirty_key(inv), inv)
end

-- Adds `delta` units (negative: removes them) to the row's bucket of `deadline`, and to
-- r. `e` is the row's e as the caller read it (false: read it here).
local function add_hold(inv, deadline, delta, e)
  local key = stock_key(inv)
  local field = 't' .. deadline
  if redis.call('HINCRBY', key, field, delta) == 0 then redis.call('HDEL', key, field) end
  redis.call('HINCRBY', key, 'r', delta)
  mark_dirty(inv)
  if delta > 0 then
    if e == false then e = redis.call('HGET', key, 'e') end
    if not e or deadline < tonumber(e) then
      redis.call('HSET', key, 'e', deadline)
      redis.call('ZADD', due_key(inv), deadline, inv)
    end
  end
end

-- Moves `qty` held units of a row from the bucket of `from` to that of `to` (a later
-- deadline: e stays a lower bound, and r does not change).
local function move_hold(inv, from, to, qty)
  local key = stock_key(inv)
  local field = 't' .. from
  if redis.call('HINCRBY', key, field, -qty) == 0 then redis.call('HDEL', key, field) end
  redis.call('HINCRBY', key, 't' .. to, qty)
end

-- The units of row `inv` (of product `pid`) in the line of cart key `ck` (0 if none).
local function line_on_row(ck, pid, inv)
  local line = pid and redis.call('HGET', ck, pid)
  if not line then return 0 end
  local line_inv, qty = parse_line(line)
  return line_inv == inv and qty or 0
end

-- A waitlist value: an offer's "quantity deadline" or a wait's "quantity window" (on a
-- Redis Cluster "quantity window r": see pour), as two numbers (nil for none) and the
-- flag ('' for none).
local function parse_pair(value)
  local a, b, flag = string.match(value or '', '^(%d+) (%d+) ?(%a*)$')
  if not a then return nil end
  return tonumber(a), tonumber(b), flag
end

-- The cart's offer on a row while it lasts: its quantity and deadline, else nil.
local function live_offer(inv, sid, now)
  local q, d = parse_pair(redis.call('HGET', offers_key(inv), sid))
  if q and d >= now then return q, d end
  return nil
end

-- The cart's hold on a row while it lasts: quantity, deadline and the id of the change
-- that set it ('' for none), else 0, nil and the id. A record is "quantity deadline" or
-- "quantity deadline change".
local function hold_record(inv, sid, now)
  local value = redis.call('HGET', hold_records_key(inv), sid) or ''
  local q, d, op = string.match(value, '^(%d+) (%d+) ?(%S*)$')
  if q and tonumber(d) >= now then return tonumber(q), tonumber(d), op end
  return 0, nil, op or ''
end

-- Whether `member`'s pending mark on the row is there and has not lapsed.
local function pending_live(inv, member, now)
  local deadline = redis.call('ZSCORE', pending_key(inv), member)
  return deadline ~= false and deadline ~= nil and tonumber(deadline) >= now
end

-- The waitlist: while carts wait on a row, units that come back are never made public.
-- Whatever is available goes, in the same step, to the carts at the head of the queue as
-- offers: the units are held for the cart until `now + its window`, in the bucket of
-- that deadline (so an unclaimed offer ends like any hold, and its units come back here
-- to the next in line). A cart that is no longer live loses its place. An offer may be
-- for fewer units than asked when fewer came back. Returns the units offered.
-- Every function that may make units available (logical expiry, a lowered line, an
-- abandon, a restock, an offer given up) calls this on the row afterwards; a row that
-- never had a waitlist costs one EXISTS.
local function pour(inv, now)
  local wl = waitlist_key(inv)
  if redis.call('EXISTS', wl) == 0 then return 0 end
  local key = stock_key(inv)
  local row = redis.call('HMGET', key, 'oh', 'r', 'p', 'mx')
  local available = tonumber(row[1] or 0) - tonumber(row[2] or 0)
  local offered = 0
  while available > 0 do
    local head = redis.call('ZRANGE', wl, 0, 0)[1]
    if not head then break end
    redis.call('ZREM', wl, head)
    local want = redis.call('HGET', wanted_key(inv), head)
    redis.call('HDEL', wanted_key(inv), head)
    redis.call('HINCRBY', key, 'wv', 1)
    local qty, window, by_row = parse_pair(want)
    local live, ck = qty ~= nil, nil
    if live and by_row == 'r' then
      -- A wait made on a Redis Cluster (cartd_wait_row): the cart lives in another slot,
      -- which a function here must not read, so the row judges it by what it knows. A
      -- checkout under way with a line here (its pending mark) ends its turn, and its
      -- line here is its hold record. A cart that ended elsewhere is offered units all
      -- the same: the offer lapses after its window and passes on.
      live = not pending_live(inv, head, now)
    elseif live then
      ck = cart_key(head)
      live = redis.call('PEXPIRETIME', ck) >= now and
                 redis.call('HEXISTS', ck, CHECKING_OUT) == 0
    end
    if live then
      local q = math.min(qty, available)
      -- Never more than the row's per-cart limit lets the cart add to its line: units
      -- it could not claim would be kept from the carts behind it for the window.
      if row[4] then
        local line = ck and line_on_row(ck, row[3], inv) or (hold_record(inv, head, now))
        q = math.min(q, tonumber(row[4]) - line)
      end
      if q > 0 then
        -- Rounded up to a second, so offers share buckets.
        local until_ms = round_up(now + window, 1000)
        add_hold(inv, until_ms, q, false)
        redis.call('HSET', offers_key(inv), head, q .. ' ' .. until_ms)
        available = available - q
        offered = offered + q
      end
    end
  end
  return offered
end

-- Forgets offers whose deadline has passed (their units left r with their bucket).
local function forget_lapsed_offers(inv, now)
  local offers = redis.call('HGETALL', offers_key(inv))
  for i = 1, #offers, 2 do
    local _, deadline = parse_pair(offers[i + 1])
    if deadline < now then
      redis.call('HDEL', offers_key(inv), offers[i])
      redis.call('HINCRBY', stock_key(inv), 'wv', 1)
    end
  end
end

-- Forgets the hold records (split.lua) that ended before now: their units left with
-- their bucket. A row that never had one (a standalone Redis) costs one ZRANGE.
local function forget_lapsed_holds(inv, now)
  local hx = hold_deadlines_key(inv)
  local gone = redis.call('ZRANGE', hx, '-inf', '(' .. now, 'BYSCORE')
  if #gone == 0 then return end
  redis.call('HDEL', hold_records_key(inv), unpack(gone))
  redis.call('ZREMRANGEBYSCORE', hx, '-inf', '(' .. now)
end

-- A change that takes `more` units of a row beyond what the cart holds there, with
-- `available` free: the cart's offer on the row (its {quantity, deadline}, or nil) if it
-- may claim one (`offers`: the row has had a waitlist), and the refusal to answer when
-- even with it the units are not there (nil when they are).
local function claim_or_refuse(inv, sid, now, offers, more, available, dropped)
  local claim = nil
  if offers then
    local q, d = live_offer(inv, sid, now)
    if q then claim = {q, d} end
  end
  if more > available + (claim and claim[1] or 0) then
    local waited = redis.call('EXISTS', waitlist_key(inv), offers_key(inv)) > 0
    return nil, {'insufficient', math.max(available, 0), dropped, waited and 1 or 0}
  end
  return claim, nil
end

-- Appends lines {{pid, inv, qty}, ...} to a reply as flat triples.
local function push_lines(out, lines)
  for _, l in ipairs(lines) do
    table.insert(out, l[1])
    table.insert(out, l[2])
    table.insert(out, l[3])
  end
  return out
end

-- Logical expiry: drops every bucket of one stock row whose deadline is before now, so
-- the units count as available at the deadline whether or not anything else ran.
-- `e` is the row's e as the caller read it (false: read it here). Returns how many
-- units it returned, whether it rewrote e (the caller's copy is stale then), and how
-- many of them went to waiting carts at once (see pour): r is down by returned - offered.
local function drop_expired(inv, now, e)
  local key = stock_key(inv)
  if e == false then e = redis.call('HGET', key, 'e') end
  if not e or tonumber(e) >= now then return 0, false, 0 end
  local fields = redis.call('HGETALL', key)
  local gone, dropped, next_e = {}, 0, nil
  for i = 1, #fields, 2 do
    local f = fields[i]
    if string.byte(f, 1) == 116 then  -- 't': a bucket
      local deadline = tonumber(string.sub(f, 2))
      if deadline < now then
        table.insert(gone, f)
        dropped = dropped + tonumber(fields[i + 1])
      elseif not next_e or deadline < next_e then
        next_e = deadline
      end
    end
  end
  if #gone > 0 then
    redis.call('HDEL', key, unpack(gone))
    forget_lapsed_holds(inv, now)
  end
  if dropped ~= 0 then
    redis.call('HINCRBY', key, 'r', -dropped)
    mark_dirty(inv)
  end
  if next_e then
    redis.call('HSET', key, 'e', next_e)
    redis.call('ZADD', due_key(inv), next_e, inv)
  else
    redis.call('HDEL', key, 'e')
    redis.call('ZREM', due_key(inv), inv)
  end
  local offered = 0
  if dropped ~= 0 and redis.call('EXISTS', offers_key(inv), waitlist_key(inv)) > 0 then
    forget_lapsed_offers(inv, now)
    offered = pour(inv, now)
  end
  return dropped, true, offered
end

-- The lines of a cart hash as HGETALL returns it: {{pid, inv, qty}, ...}, without the
-- birth and checkout fields.
local function cart_lines(fields)
  local lines = {}
  for i = 1, #fields, 2 do
    local f = fields[i]
    if f ~= BIRTH and f ~= CHECKING_OUT and f ~= LOCK and string.byte(f, 1) ~= 63 then  -- '?'
      local inv, qty = parse_line(fields[i + 1])
      table.insert(lines, {f, inv, qty})
    end
  end
  return lines
end

-- Removes the holds of a live cart (deadline >= now, so its buckets are live) from their
-- rows. Returns the units it returned.
local function unhold_lines(lines, deadline)
  local units = 0
  for _, l in ipairs(lines) do
    add_hold(l[2], deadline, -l[3])
    units = units + l[3]
  end
  return units
end

-- A change under way on a row: its holds still count here, and the main DB may already
-- have removed its units. Marked when the change begins, cleared by the step that drops
-- its holds and lowers on_hand at once; it lapses at `deadline` if that never runs.
local function mark_pending(inv, member, deadline)
  redis.call('ZADD', pending_key(inv), deadline, member)
end

local function clear_pending(inv, member)
  return redis.call('ZREM', pending_key(inv), member)
end

local function has_pending(inv, now)
  local key = pending_key(inv)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. now)
  return redis.call('ZCARD', key) > 0
end

-- Takes a row's on_hand from the main DB unless the mirror has a newer one (true if it
-- changed the mirror). Versions order the writes, so a late write (a slow checkout,
-- recovery after a kill, a second instance) never undoes a newer one, and writing the
-- same version twice is harmless. A `careful` write (the mirror sync, the start-up
-- mirror) also leaves a row alone while a change is under way on it: the DB's count may
-- already lack units whose holds still count here, and taking it would subtract them
-- twice. The step that ends the change writes the row itself.
local function mirror_on_hand(inv, on_hand, version, careful)
  if careful and has_pending(inv, now_ms()) then return false end
  local row = redis.call('HMGET', stock_key(inv), 'oh', 'ov')
  local have = tonumber(row[2] or -1)
  if version < have then return false end
  if version == have and tonumber(row[1]) == on_hand then return false end  -- nothing new
  redis.call('HSET', stock_key(inv), 'oh', on_hand, 'ov', version)
  mark_dirty(inv)
  return true
end

-- The step that ends a change (a checkout's finish, an admin change) takes the row's
-- on_hand from the main DB after the change, once its own pending mark is cleared. The
-- DB's count is the truth only if no other change is under way on the row: another
-- checkout may have committed in the DB already, its units gone from the DB's count
-- while its holds still count here until its own finish runs; taking the count then
-- subtracts those units twice (on_hand below the live holds: negative available). And
-- a DB count older than the mirror's version lacks a later change already settled here.
-- In either case the step applies its own change instead: `delta` (its effect on
-- on_hand) when its pending mark was still there (nothing could have taken its effect
-- before), and records the newer version so a stale count is not taken later. Without
-- a delta, a `careful` step leaves the row to the others' steps and the mirror sync;
-- otherwise it takes the count as before (too low rather than too high).
local function settle_on_hand(inv, on_hand, version, delta, careful)
  local key = stock_key(inv)
  local row = redis.call('HMGET', key, 'oh', 'ov')
  local have = tonumber(row[2] or -1)
  if not has_pending(inv, now_ms()) and version >= have then
    return mirror_on_hand(inv, on_hand, version)
  end
  if delta and row[1] then
    redis.call('HSET', key, 'oh', tonumber(row[1]) + delta, 'ov', math.max(have, version))
    mark_dirty(inv)
    return true
  end
  if careful then return false end
  return mirror_on_hand(inv, on_hand, version)
end

-- A cart's place or offer on one row, as a reply: {inventory_id, product_id, state,
-- quantity, n}, state 'waiting' (n = position, 1 = next) or 'offer' (n = its deadline,
-- ms); nil when the row names the cart in neither (an offer lapsed, or was claimed).
local function wait_state(inv, sid, now)
  local pid = redis.call('HGET', stock_key(inv), 'p') or ''
  local rank = redis.call('ZRANK', waitlist_key(inv), sid)
  if rank then
    local qty = parse_pair(redis.call('HGET', wanted_key(inv), sid))
    return {inv, pid, 'waiting', qty or 0, rank + 1}
  end
  local q, d = live_offer(inv, sid, now)
  if q then return {inv, pid, 'offer', q, d} end
  return nil
end

-- The rows a cart's fields (as HGETALL answers them) mark with '?<inv>': the rows it
-- waits on, or did (a mark outlives a lapsed or claimed offer: the row has the truth).
local function marked_rows(fields)
  local out = {}
  for i = 1, #fields, 2 do
    if string.byte(fields[i], 1) == 63 then table.insert(out, string.sub(fields[i], 2)) end
  end
  return out
end

-- The rows a cart that ends waits on: its marks, and on a Redis Cluster its w: set
-- (deleted here), which holds them all even when the cart expired meanwhile.
local function rows_waited(fields, sid)
  local rows, seen = {}, {}
  local all = marked_rows(fields)
  for _, inv in ipairs(redis.call('SMEMBERS', waits_key(sid))) do table.insert(all, inv) end
  for _, inv in ipairs(all) do
    if not seen[inv] then
      seen[inv] = true
      table.insert(rows, inv)
    end
  end
  redis.call('DEL', waits_key(sid))
  return rows
end

-- Appends the rows a cart's marks name to a reply as one trailing array, when there are
-- any (a Redis Cluster's caller reads them from the rows' slots).
local function push_marks(out, fields)
  local marks = marked_rows(fields)
  if #marks > 0 then table.insert(out, marks) end
  return out
end

-- The rows a cart waits on, as a reply: wait_state per marked row, marks whose place
-- and offer are both gone left out.
local function waits_of(ck, sid, now)
  local out = {}
  for _, inv in ipairs(marked_rows(redis.call('HGETALL', ck))) do
    local w = wait_state(inv, sid, now)
    if w then table.insert(out, w) end
  end
  return out
end

-- A live cart as every cart reply shows it:
--   {deadline_ms, product_id, inventory_id, quantity, name, unit_price_cents, ...
--    [, {waits_of...}]}
-- (the trailing array only when the cart waits on some row), or nil when the cart is
-- unknown or expired.
local function cart_view(ck, now)
  local deadline = live_deadline(ck, now)
  if not deadline then return nil end
  local out = {deadline}
  local fields = redis.call('HGETALL', ck)
  for _, l in ipairs(cart_lines(fields)) do
    local info = redis.call('HMGET', stock_key(l[2]), 'n', 'pc')
    table.insert(out, l[1])
    table.insert(out, l[2])
    table.insert(out, l[3])
    table.insert(out, info[1] or '')
    table.insert(out, tonumber(info[2] or 0))
  end
  if #marked_rows(fields) > 0 then
    table.insert(out, waits_of(ck, string.match(ck, '^{c%d+}:(.*)$'), now))
  end
  return out
end

-- Why there is no live cart for sid: 'checked_out' if it became an order, 'expired' if
-- it existed (it ended, or it awaits deletion), else 'unknown'.
local function missing_cart(sid)
  if redis.call('EXISTS', done_key(sid)) == 1 then return 'checked_out' end
  if redis.call('EXISTS', gone_key(sid), cart_key(sid)) > 0 then return 'expired' end
  return 'unknown'
end

-- Appends one event to the cart's group stream. `lines` may be nil (an expired cart:
-- Redis deleted it, with its lines, by itself).
local function cart_event(sid, kind, lines, order_id)
  local args = {'XADD', events_key(sid), 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'type', kind,
                'cart', sid}
  if lines then
    local json = {}
    for _, l in ipairs(lines) do
      table.insert(json, {product_id = l[1], inventory_id = l[2], quantity = l[3]})
    end
    table.insert(args, 'lines')
    table.insert(args, #json == 0 and '[]' or cjson.encode(json))
  end
  if order_id then
    table.insert(args, 'order')
    table.insert(args, order_id)
  end
  redis.call(unpack(args))
end

-- Gives up a cart's place on a row and any offer it holds there; the offer's units go to
-- the next in line. Returns the offered units released.
local function leave_row(inv, sid, now)
  local released = 0
  local key = stock_key(inv)
  local waited = redis.call('ZREM', waitlist_key(inv), sid)
  redis.call('HDEL', wanted_key(inv), sid)
  local q, d = live_offer(inv, sid, now)
  local offered = redis.call('HDEL', offers_key(inv), sid) == 1  -- a lapsed one too
  if q then
    add_hold(inv, d, -q)
    released = q
  end
  if waited == 1 or offered then redis.call('HINCRBY', key, 'wv', 1) end
  if released > 0 then pour(inv, now) end
  return released
end

-- Leaves every waitlist a cart is in (it ended: abandoned or checked out).
local function leave_all(ck, sid, now)
  for _, inv in ipairs(marked_rows(redis.call('HGETALL', ck))) do leave_row(inv, sid, now) end
end

-- Whether the row names the cart: a place in its waitlist or an offer (a lapsed one too).
local function row_names(inv, sid)
  return redis.call('ZSCORE', waitlist_key(inv), sid) ~= false or
             redis.call('HEXISTS', offers_key(inv), sid) == 1
end
