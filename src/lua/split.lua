-- split.lua: the line change in steps of one slot each, for a Redis Cluster, where a
-- cart and its stock rows live on different nodes (docs/DESIGN.md, "Redis Cluster").
-- cartd_set_line does the whole change in one atomic call on a standalone Redis; a
-- cluster refuses a call whose keys span slots, so there the change is three steps,
-- each safe to repeat, driven by src/cart/split.cpp:
--
--   1. cartd_line_begin (the cart's slot) locks the cart for this change, with a lease,
--      and answers its lines, deadline and Redis' clock;
--   2. cartd_hold (each row's slot) sets the cart's hold on the row to "q units until d".
--      The row keeps the cart's record ({s<n>}hc:<inv>), so the step has set semantics:
--      a repeat, or a repair, changes nothing more. The line's own row goes first (it
--      may refuse); the rows of the cart's other lines follow when the deadline moves;
--   3. cartd_line_commit (the cart's slot) writes the line and the deadline, and
--      unlocks; cartd_line_release unlocks after a refusal. After the commit the line's
--      row shrinks to the line, and a row the line left lets go: each only while the
--      row's record is still this change's (a row the line leaves is set as it is, for
--      this change, before the commit).
--
-- A row is never written below the cart's line: a hold grows before the cart's line
-- does, and shrinks after. So a change cut short (cartd killed between steps) leaves a
-- row holding more than the cart says, for at most its record's deadline: a unit kept
-- from sale for a while, never a unit sold twice. The next change of that cart finds the
-- lapsed lock and sets every row the cut-short change may have touched back to what the
-- cart says. (A shrink whose deadline stays is two steps, the cart first and with no
-- lock: see cartd_line_begin's 'shrunk'. Cut short, its row holds the old quantity until
-- the line's next locked change, a change that moves the cart's deadline, the cart's
-- checkout, or the record's deadline. A grow, and a new cart's first line, are two steps
-- with the row first: cartd_hold_grow then cartd_line_grown, cartd_hold_new then
-- cartd_line_commit.) The lease outlasts every step's timeout, so a change in
-- progress keeps its lock; a second change of the same cart meanwhile is told 'busy'
-- (the caller waits a little and tries again). A step held up for longer (a failover, a
-- moving slot) must not land after the next change took the lapsed lock: a locked
-- change's row writes carry a fence inside the lease (cartd_hold's ARGV[8]).
--
--   {s<n>}hc:<inv>   hash sid -> "quantity deadline change": each cart's hold on the row,
--                    as the row knows it (a record whose deadline has passed holds
--                    nothing), and the line change that set it ('' for another step);
--                    the cart's line names the same change (parse_line).
--   {s<n>}hx:<inv>   zset sid -> deadline: the same records by deadline, so the holds
--                    that lapse are forgotten with their bucket (drop_expired).
--   cart field '~'   "change lease_until_ms inventory_id": the change under way.

-- The cart's next deadline, as cartd_set_line computes it: it slides, within the cart's
-- life (`born`), in quanta; from ARGV[8] TTL ms, ARGV[9] quantum ms, ARGV[10] longest life
-- ms, as the steps that compute it take them.
local function next_deadline(now, born, args)
  return math.min(round_up(now + tonumber(args[8]), tonumber(args[9])), born + tonumber(args[10]))
end

-- cartd_hold: sets a cart's hold on one stock row, all or nothing.
-- KEYS[1]  the stock row ({s<n>}:<inv>)
-- ARGV[1]  inventory_id   ARGV[2] session id   ARGV[3] product_id
-- ARGV[4]  quantity, >= 0 (0: the cart holds nothing here)
-- ARGV[5]  deadline ms (the cart's; ignored with quantity 0)
-- ARGV[6]  the id of the line change that sets it, kept in the record ('' or absent: none)
-- ARGV[7]  'if-mine': a hold that only shrinks, and only while the record is still that
--          change's, at that deadline (for a quantity above 0), holding at least the
--          quantity. A change's last word on a row, after the cart has its line (the hold
--          shrinks to the line, or goes): another change of the cart may have set the row
--          since, from another instance, and its hold stands. A shrink written to the cart
--          first (cartd_line_begin's 'shrunk') keeps the line's change id, so its row step
--          is such a last word too; of two shrinks' row steps in either order, the row
--          keeps the smaller, which is the line.
-- ARGV[8]  cartd_hold only: the time (ms, Redis' clock) after which the step writes
--          nothing and answers {'lapsed'}: a locked change's fence, inside the lease of
--          its lock (ARGV[7] is '' then, when not 'if-mine'). A write of a change whose
--          lease lapsed may land after the next change of the cart took the lock and set
--          the row (a command held up by a failover or a moving slot for longer than the
--          lease): it would set the row back below that change's line.
-- ARGV[7..] for cartd_hold_new and cartd_hold_grow below (as functions of their own, so
--          a library before them answers "function not found" and writes nothing):
--   cartd_hold_new: the first line of a new cart (its id is cartd's own, so nothing else
--          changes it), before the cart exists: the row sets the cart's deadline as
--          cartd_line_begin would, from its clock, with ARGV[8] TTL ms, ARGV[9] deadline
--          quantum ms, ARGV[10] the cart's longest life ms (ARGV[5] is ignored), and
--          answers it and the cart's birth after the name and price.
--   cartd_hold_grow: a grow that goes to the row first (see cartd_line_grown), with
--          ARGV[8] TTL ms, ARGV[9] deadline quantum ms, ARGV[10] 'set' (ARGV[4] is the
--          line's new quantity) or 'add' (ARGV[4] units more than the record holds),
--          ARGV[11] the most a line may hold. Only for a live record that names a change,
--          whose deadline stays, and that grows within that most, without claiming an
--          offer: else {'slow'}, nothing written (nor for a refused 'add', which the
--          record's quantity may overstate). Holds at the record's deadline and answers
--          it, the change the record named, what the record holds now, and what it held
--          before, after the name and price.
-- Returns {'ok', dropped, name, unit_price_cents [, deadline_ms, birth_ms]}, {'lapsed'}
-- (past the fence, nothing written), or, only when the hold grows:
--   {'insufficient', available, dropped, waitlisted 0|1}  {'unknown_inventory'}
--   {'product_mismatch', product_id}  {'limit_exceeded', max_per_cart}
-- A hold that stays or shrinks is always taken. Growing it claims the cart's offer on
-- the row first (see cartd_set_line), then needs the rest available.
local function hold(keys, args, kind)
  local now = now_ms()
  local key, inv, sid, pid = keys[1], args[1], args[2], args[3]
  local qty, deadline = tonumber(args[4]), tonumber(args[5])
  if not kind and args[8] and now > tonumber(args[8]) then return {'lapsed'} end
  local new_cart = kind == 'new-cart'
  if new_cart then
    deadline = next_deadline(now, now, args)
  end
  local row = redis.call('HMGET', key, 'p', 'oh', 'r', 'e', 'mx', 'wv', 'n', 'pc')
  if not row[1] and qty > 0 then return {'unknown_inventory'} end
  local dropped, rewrote, offered = drop_expired(inv, now, row[4])
  local e = not rewrote and row[4]  -- false: add_hold reads it again
  local q0, d0, op0 = hold_record(inv, sid, now)
  local op = args[6] or ''
  local grow = kind == 'grow'
  if grow then
    if op0 == '' or q0 == 0 or round_up(now + tonumber(args[8]), tonumber(args[9])) > d0 then
      return {'slow'}
    end
    if args[10] == 'add' then qty = q0 + qty end  -- the line may hold less than q0
    if qty <= q0 or qty > tonumber(args[11]) then return {'slow'} end
    deadline = d0
  end
  if args[7] == 'if-mine' and
     (op == '' or op0 ~= op or qty > q0 or (qty > 0 and d0 ~= deadline)) then
    return {'ok', dropped, row[7] or '', tonumber(row[8] or 0)}
  end
  local claim = nil
  if qty > q0 then
    if row[1] ~= pid then return {'product_mismatch', row[1]} end
    local overstated = grow and args[10] == 'add'  -- its refusals may be wrong: ask again
    if row[5] and qty > tonumber(row[5]) then
      return overstated and {'slow'} or {'limit_exceeded', tonumber(row[5])}
    end
    local available = tonumber(row[2]) - (tonumber(row[3] or 0) - dropped + offered)
    local refused
    claim, refused = claim_or_refuse(inv, sid, now, row[6], qty - q0, available, dropped)
    if refused then return overstated and {'slow'} or refused end
    if grow and claim then return {'slow'} end  -- an offer is claimed by the locked steps
  end
  local reply = {'ok', dropped, row[7] or '', tonumber(row[8] or 0)}
  if new_cart then
    table.insert(reply, deadline)
    table.insert(reply, now)
  elseif grow then
    table.insert(reply, deadline)
    table.insert(reply, op0)
    table.insert(reply, qty)
    table.insert(reply, q0)
  end
  local hc, hx = hold_records_key(inv), hold_deadlines_key(inv)
  if qty == q0 and (qty == 0 or deadline == d0) then  -- a repeat
    -- The same hold, set by another change now: the row is that change's to shrink.
    if qty > 0 and op0 ~= op then redis.call('HSET', hc, sid, qty .. ' ' .. deadline .. ' ' .. op) end
    return reply
  end
  if claim then
    add_hold(inv, claim[2], -claim[1])
    redis.call('HDEL', offers_key(inv), sid)
    redis.call('HINCRBY', key, 'wv', 1)
  end
  if q0 > 0 and qty > 0 and deadline == d0 then
    add_hold(inv, deadline, qty - q0, e)  -- the same bucket: one change of its count
  else
    if q0 > 0 then add_hold(inv, d0, -q0) end
    if qty > 0 then add_hold(inv, deadline, qty, e) end
  end
  if qty > 0 then
    redis.call('HSET', hc, sid, qty .. ' ' .. deadline .. ' ' .. op)
    if deadline ~= d0 then redis.call('ZADD', hx, deadline, sid) end
  else
    redis.call('HDEL', hc, sid)
    redis.call('ZREM', hx, sid)
  end
  -- Units that come back go to a waitlist, if the row has ever had one (wv).
  if (qty < q0 or claim) and row[6] then pour(inv, now) end
  return reply
end

-- The change under way on a cart, from its '~' field: its id, lease end and row.
local function parse_lock(value)
  local op, until_ms, inv = string.match(value or '', '^(%S+) (%d+) (%S*)$')
  if not op then return nil end
  return op, tonumber(until_ms), inv
end

-- The change under way on a cart (its '~' field) that blocks another step: {'busy'}
-- while its lease lasts, else nil and the row it may have left holding too much ('' for
-- none).
local function lock_state(lock, now)
  local _, until_ms, inv = parse_lock(lock)
  if until_ms and until_ms >= now then return {'busy'}, nil end
  return nil, inv or ''
end

-- A live cart a step is about to change: its fields (as HGETALL answers them), the same
-- as a map, and the row of a line change that lapsed unfinished ('' for none); or,
-- instead, the answer to give: {'checkout_in_progress'} or {'busy'}.
local function cart_for_change(ck, now)
  local fields = redis.call('HGETALL', ck)
  local map = {}
  for i = 1, #fields, 2 do map[fields[i]] = fields[i + 1] end
  if map[CHECKING_OUT] then return nil, {'checkout_in_progress'} end
  local busy, stale = lock_state(map[LOCK], now)
  if busy then return nil, busy end
  return {fields = fields, map = map, stale = stale}, nil
end

-- The shortcut a set-mode change of the cart's `line` (its stored value, or nil) takes
-- when the line is on the change's row and the deadline (`deadline`, the cart's now)
-- stays: 'same' for the line's quantity, or, for less, 'shrunk' and the change the line
-- names (the smaller line written here, keeping that id); nil for none (a grow, another
-- row, a deadline that moves, a line that names no change).
local function set_shortcut(ck, args, now, born, deadline, line)
  if not line then return nil end
  local inv, q, op0 = parse_line(line)
  local want = tonumber(args[7])
  if inv ~= args[4] or want > q or next_deadline(now, born, args) > deadline then return nil end
  if want == q then return 'same', '' end
  if op0 == '' then return nil end  -- the row's record cannot tell it was set for the line
  if want > 0 then
    redis.call('HSET', ck, args[6], inv .. ' ' .. want .. ' ' .. op0)
  else
    redis.call('HDEL', ck, args[6])
  end
  return 'shrunk', op0
end

-- The shortcut for a caller that needs no lines back ('bare'): reads the four fields that
-- decide it, and answers {'same' | 'shrunk' | 'checkout_in_progress' | 'busy', ...}
-- without the lines and marks, or nil when the change takes the full path (a lock that
-- lapsed, or no shortcut).
local function bare_set(ck, args, now, deadline)
  local cart = redis.call('HMGET', ck, CHECKING_OUT, LOCK, BIRTH, args[6])
  if cart[1] then return {'checkout_in_progress'} end
  if cart[2] then
    local busy = lock_state(cart[2], now)
    return busy  -- nil for a lapsed lock: the full path repairs it
  end
  local born = tonumber(cart[3])
  local kind, op0 = set_shortcut(ck, args, now, born, deadline, cart[4])
  if kind then return {kind, now, born, deadline, op0} end
  return nil
end

-- cartd_line_begin: locks a live cart for one line change.
-- KEYS[1]  the cart
-- ARGV[1]  session id   ARGV[2] the change's id   ARGV[3] lease ms
-- ARGV[4]  the inventory_id the change will hold (recorded for a repair)
-- ARGV[5]  "1": a cart that is not live may be made anew (-> 'new')
-- ARGV[6]  product_id, ARGV[7] quantity: the line a set-mode change sets (absent for an
--          add); ARGV[8] TTL ms, ARGV[9] deadline quantum ms, ARGV[10] the cart's longest
--          life ms. When the cart has a line of that product on that row already, no
--          change of the cart lapsed unfinished, and the deadline would stay where it is:
--          * a set to the line's quantity changes nothing: answered 'same', with no lock;
--          * a set to less is written to the cart at once, with no lock, keeping the
--            line's change id, and answered 'shrunk': the row follows (cartd_hold
--            'if-mine' for that change). Holding more than the line until then is the
--            safe side, as a change cut short is (see above).
--          ARGV[11] 'bare': 'same' and 'shrunk' answer without the cart's lines and marks
--          (the caller answers with the cart's id only: the classic route), and read
--          only the fields they check.
-- Returns one of
--   {'locked', now_ms, birth_ms, deadline_ms, stale_inventory_id, pid, inv, qty, ...
--    [, {marked inventory_id...}]}
--      (stale_inventory_id: the row of a change that lapsed unfinished, else ''; the
--      lines as they were; the trailing array: the rows the cart waits on, see
--      push_marks)
--   {'same', ...} as 'locked' (stale_inventory_id ''), when the change changes nothing
--   {'shrunk', ...} as 'locked', with the line's change id in place of
--      stale_inventory_id
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
  if args[11] == 'bare' then
    local reply = bare_set(ck, args, now, deadline)
    if reply then return reply end
  end
  local cart, refused = cart_for_change(ck, now)
  if refused then return refused end
  local born = tonumber(cart.map[BIRTH])
  local lines = cart_lines(cart.fields)
  if args[6] and cart.stale == '' then
    local kind, op0 = set_shortcut(ck, args, now, born, deadline, cart.map[args[6]])
    if kind then
      return push_marks(push_lines({kind, now, born, deadline, op0}, lines), cart.fields)
    end
  end
  redis.call('HSET', ck, LOCK, args[2] .. ' ' .. (now + tonumber(args[3])) .. ' ' .. args[4])
  return push_marks(push_lines({'locked', now, born, deadline, cart.stale}, lines), cart.fields)
end

-- cartd_line_commit: writes the line a change held, and ends the change.
-- KEYS[1]  the cart
-- ARGV[1]  the change's id   ARGV[2] product_id   ARGV[3] inventory_id
-- ARGV[4]  quantity (0 removes the line)   ARGV[5] the cart's deadline ms
-- ARGV[6]  "new": the change made the cart (born at ARGV[7]); else it holds the lock
-- ARGV[8]  "all": the change set the rows of the cart's other lines too (their deadline
--          moved, or a repair): each line now names this change, as its row's record does
-- Returns {'ok'}, or {'lost', 'gone'} (the cart ended meanwhile, or a new cart's id is
-- taken) or {'lost', 'taken'} (the lock lapsed and another change took it).
-- The line names the change (see parse_line), so a shrink written to the cart first
-- ('shrunk' above) can tell whether the row's record is still the one set for the line.
local function line_commit(keys, args)
  local now = now_ms()
  local ck, op, pid, inv, qty, deadline = keys[1], args[1], args[2], args[3], tonumber(args[4]),
                                          args[5]
  local current = nil  -- the cart's deadline now (a new cart has none)
  if args[6] == 'new' then
    if redis.call('EXISTS', ck) == 1 then return {'lost', 'gone'} end
    redis.call('HSET', ck, BIRTH, args[7])
  else
    current = live_deadline(ck, now)
    if not current then return {'lost', 'gone'} end
    if parse_lock(redis.call('HGET', ck, LOCK)) ~= op then return {'lost', 'taken'} end
    redis.call('HDEL', ck, LOCK)
    if args[8] == 'all' then
      for _, l in ipairs(cart_lines(redis.call('HGETALL', ck))) do
        redis.call('HSET', ck, l[1], l[2] .. ' ' .. l[3] .. ' ' .. op)
      end
    end
  end
  if qty > 0 then
    redis.call('HSET', ck, pid, inv .. ' ' .. qty .. ' ' .. op)
  else
    redis.call('HDEL', ck, pid)
  end
  if current ~= tonumber(deadline) then redis.call('PEXPIREAT', ck, deadline) end
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

-- cartd_line_grown: writes a grow whose row went first (cartd_hold_grow), without a
-- lock: only if nothing changed the line since the row's record was set for it.
-- KEYS[1]  the cart
-- ARGV[1]  the change's id   ARGV[2] product_id   ARGV[3] inventory_id
-- ARGV[4]  'set': the line's new quantity; 'add': the units to add   ARGV[5] 'set' | 'add'
-- ARGV[6]  the deadline the row held at (the record's)   ARGV[7] the change the record
--          named before (cartd_hold's answer)   ARGV[8] TTL ms, ARGV[9] deadline quantum
--          ms, ARGV[10] the cart's longest life ms
-- ARGV[11] 'bare': answer {'ok', quantity} only (the caller needs no lines back)
-- Returns {'ok', quantity, pid, inv, qty, ... [, {marked inventory_id...}]} (the line as
-- written, then the cart's lines), {'refused'} (the caller takes the locked steps, which
-- set the row exactly), or {'lost', 'gone'}.
-- Why the check is enough: every step that may lower a record below a line holds the
-- cart's lock across (a lock field, live or lapsed, refuses here), writes a new change id
-- on the line at its commit (its own line, or every line when it set every row), ends
-- the cart, or sets '!' and leaves lines naming no change when given up (a checkout);
-- a shrink's row step ('if-mine') only lowers a record that names the line's change,
-- which the grow's row step renamed. So a line that still names ARGV[7], in a cart with
-- no lock and the same deadline, is backed by the record the grow set.
local function line_grown(keys, args)
  local now = now_ms()
  local ck, op, pid, inv, deadline = keys[1], args[1], args[2], args[3], tonumber(args[6])
  local current = live_deadline(ck, now)
  if not current then return {'lost', 'gone'} end
  local cart = redis.call('HMGET', ck, LOCK, CHECKING_OUT, BIRTH, pid)
  if cart[1] or cart[2] or current ~= deadline or args[7] == '' then return {'refused'} end
  if next_deadline(now, tonumber(cart[3]), args) > current then return {'refused'} end
  local line_inv, q, line_op = parse_line(cart[4] or '')
  if line_inv ~= inv or line_op ~= args[7] then return {'refused'} end
  local qty = args[5] == 'add' and q + tonumber(args[4]) or tonumber(args[4])
  redis.call('HSET', ck, pid, inv .. ' ' .. qty .. ' ' .. op)
  if args[11] == 'bare' then return {'ok', qty} end
  local fields = redis.call('HGETALL', ck)
  return push_marks(push_lines({'ok', qty}, cart_lines(fields)), fields)
end

-- Checkout on a cluster. The same three steps as checkout.lua, each split between the
-- cart's slot and its rows' slots; src/cart/split.cpp drives them:
--   begin:  cartd_checkout_freeze (cart), then cartd_checkout_hold (each row: the hold
--           moved to the checkout's deadline, the row marked pending);
--   finish: cartd_checkout_release (each row: the hold ends, the mirror takes the sale),
--           then cartd_checkout_close (cart);
--   abort:  cartd_checkout_unmark (each row of the attempt), then cartd_checkout_thaw
--           (cart): unmarked first, so a late unmark cannot clear the next checkout's mark.
-- A crash between the halves is settled as in checkout.lua: a frozen cart is found by
-- recovery, and every row step is safe to repeat.

-- cartd_checkout_freeze: ARGV and replies as cartd_checkout_begin, except that the lines
-- have no names and prices, and 'begun' and 'resume' carry the checkout's deadline and
-- the row of a line change that lapsed unfinished ('' for none):
--   {'begun' | 'resume', lines_json, attempt, deadline_ms, stale_inventory_id}
-- and {'busy'} while a line change is under way.
local function checkout_freeze(keys, args)
  local ck, sid, key, grace = keys[1], args[1], args[2], tonumber(args[3])
  local known = checkout_known(sid, key)
  if known then return known end
  local now = now_ms()
  local old = live_deadline(ck, now)
  if not old then return {missing_cart(sid)} end
  local cart, refused = cart_for_change(ck, now)
  if refused then return refused end
  local lines = {}
  for _, l in ipairs(cart_lines(cart.fields)) do
    table.insert(lines, {product_id = l[1], inventory_id = l[2], quantity = l[3]})
  end
  if #lines == 0 then return {'empty'} end
  local deadline = math.max(old, round_up(now + grace, tonumber(args[5])))
  if deadline ~= old then redis.call('PEXPIREAT', ck, deadline) end
  redis.call('HSET', ck, CHECKING_OUT, 1)
  redis.call('HDEL', ck, LOCK)
  local json = cjson.encode(lines)
  redis.call('HSET', checkout_key(sid), 'key', key, 'attempt', args[4], 'lines', json,
             'started', now, 'deadline', deadline)
  redis.call('ZADD', checkouts_key(sid), now, sid)
  return {'begun', json, args[4], deadline, cart.stale}
end

-- cartd_checkout_hold: ARGV and replies as cartd_hold; with 'ok' the row is marked
-- pending for the checkout (see mark_pending) until the deadline.
local function checkout_hold(keys, args)
  local reply = hold(keys, args)
  if reply[1] == 'ok' then mark_pending(args[1], args[2], tonumber(args[5])) end
  return reply
end

-- cartd_checkout_release: the order is in the main DB; its row's hold ends (the units
-- are sold) and the mirror takes the row's on_hand after the order.
-- KEYS[1] the row   ARGV[1] inventory_id   ARGV[2] session id   ARGV[3] quantity sold
-- ARGV[4] on_hand   ARGV[5] its version ('' when the DB did not say: the mirror sync will)
-- Returns the held units this call dropped.
local function checkout_release(keys, args)
  local inv, sid, now = args[1], args[2], now_ms()
  local marked = pending_live(inv, sid, now)
  local q, d = hold_record(inv, sid, now)
  if q > 0 then add_hold(inv, d, -q) end
  redis.call('HDEL', hold_records_key(inv), sid)
  redis.call('ZREM', hold_deadlines_key(inv), sid)
  clear_pending(inv, sid)
  -- A repeat finds the row unmarked: it takes the DB's count only carefully, as the
  -- mirror sync does (another checkout may be under way on the row).
  if args[5] ~= '' then
    settle_on_hand(inv, tonumber(args[4]), tonumber(args[5]), marked and -tonumber(args[3]) or nil,
                   not marked)
  end
  if redis.call('EXISTS', keys[1]) == 1 then
    -- The cart is an order now: its place and offer here go before anyone is offered
    -- units (its other rows are left after cartd_checkout_close).
    leave_row(inv, sid, now)
    pour(inv, now)
  end
  return q
end

-- cartd_checkout_close: the cart's half of a finished checkout, after its rows.
-- KEYS[1] the cart   ARGV[1] session id   ARGV[2] idempotency key   ARGV[3] order id
-- ARGV[4] JSON [{product_id, inventory_id, quantity}]: the order's lines
-- Returns {'finished' [, {inventory_id...}]} (the rows the cart waited on, as push_marks
-- gives them: the caller leaves them), or {'done'} when it had finished already.
local function checkout_close(keys, args)
  local sid, key, order_id = args[1], args[2], args[3]
  if redis.call('EXISTS', done_key(sid)) == 1 then return {'done'} end
  local marks = rows_waited(redis.call('HGETALL', keys[1]), sid)
  local sold = {}
  for _, l in ipairs(cjson.decode(args[4])) do
    table.insert(sold, {l.product_id or '', l.inventory_id, l.quantity})
  end
  redis.call('DEL', keys[1], checkout_key(sid))
  redis.call('ZREM', checkouts_key(sid), sid)
  redis.call('SET', done_key(sid), key .. ' ' .. order_id, 'PX', DONE_TTL_MS)
  cart_event(sid, 'checked_out', sold, order_id)
  local out = {'finished'}
  if #marks > 0 then table.insert(out, marks) end
  return out
end

-- cartd_checkout_thaw: the cart's half of giving up a checkout that made no order (its
-- rows are unmarked before).
-- KEYS[1] the cart   ARGV[1] session id   ARGV[2] idempotency key   ARGV[3] attempt id
-- Returns {1} if there was such a checkout, else {0}.
local function checkout_thaw(keys, args)
  local sid = args[1]
  local co = redis.call('HMGET', checkout_key(sid), 'key', 'attempt', 'lines')
  if co[1] ~= args[2] or (co[2] or attempt_of(sid, co[1])) ~= args[3] then return {0} end
  redis.call('DEL', checkout_key(sid))
  redis.call('ZREM', checkouts_key(sid), sid)
  redis.call('HDEL', keys[1], CHECKING_OUT)
  -- The checkout set the rows' records for itself: the lines name no change now, so the
  -- next change of each takes the locked steps (a shrink's row step would find the
  -- checkout's record, not its line's, and leave the row holding the old quantity).
  for _, l in ipairs(cart_lines(redis.call('HGETALL', keys[1]))) do
    redis.call('HSET', keys[1], l[1], l[2] .. ' ' .. l[3])
  end
  return {1}
end

-- cartd_checkout_unmark: a row of a checkout given up: its pending mark goes (if ARGV[5]
-- is '1': the row is one of the attempt's; its hold stays, the cart's again), and the
-- mirror takes the row's on_hand if the DB gave one.
-- KEYS[1] the row   ARGV[1] inventory_id   ARGV[2] session id   ARGV[3] on_hand or ''
-- ARGV[4] its version or ''   ARGV[5] '1': clear the mark.   Returns 1.
local function checkout_unmark(keys, args)
  local inv = args[1]
  if args[5] ~= '0' then clear_pending(inv, args[2]) end
  if args[4] ~= '' and redis.call('EXISTS', keys[1]) == 1 then
    mirror_on_hand(inv, tonumber(args[3]), tonumber(args[4]))
    pour(inv, now_ms())
  end
  return 1
end

-- cartd_abandon_cart: the cart's half of an abandon on a cluster (its rows are set to
-- hold nothing next, with cartd_hold).
-- KEYS[1] the cart   ARGV[1] session id
-- Returns {'abandoned', deadline_ms, stale_inventory_id, pid, inv, qty, ... [, {marked
-- inventory_id...}]} (the rows it waited on: the caller leaves them),
-- {'checkout_in_progress'}, {'busy'}, or {'expired' | 'unknown' | 'checked_out'}.
local function abandon_cart(keys, args)
  local sid, ck, now = args[1], keys[1], now_ms()
  local deadline = live_deadline(ck, now)
  if not deadline then return {missing_cart(sid)} end
  local cart, refused = cart_for_change(ck, now)
  if refused then return refused end
  local lines = cart_lines(cart.fields)
  local waited = rows_waited(cart.fields, sid)
  redis.call('DEL', ck)
  redis.call('SET', gone_key(sid), 'abandoned', 'PX', GONE_TTL_MS)
  cart_event(sid, 'abandoned', lines)
  local out = push_lines({'abandoned', deadline, cart.stale}, lines)
  if #waited > 0 then table.insert(out, waited) end
  return out
end

-- cartd_cart_lines: a live cart's lines, from its own slot (names and prices, and the
-- places and offers of the rows it waits on, are read from the rows' slots after).
-- KEYS[1] the cart   ARGV[1] session id
-- Returns {deadline_ms, product_id, inventory_id, quantity, ... [, {marked
-- inventory_id...}]} (push_marks), or 'expired' / 'unknown' / 'checked_out' (see
-- missing_cart).
local function cart_lines_of(keys, args)
  local deadline = live_deadline(keys[1], now_ms())
  if not deadline then return missing_cart(args[1]) end
  local fields = redis.call('HGETALL', keys[1])
  return push_marks(push_lines({deadline}, cart_lines(fields)), fields)
end

redis.register_function('cartd_hold', function(keys, args) return hold(keys, args) end)
redis.register_function('cartd_hold_new', function(keys, args) return hold(keys, args, 'new-cart') end)
redis.register_function('cartd_hold_grow', function(keys, args) return hold(keys, args, 'grow') end)
redis.register_function('cartd_line_begin', line_begin)
redis.register_function('cartd_line_commit', line_commit)
redis.register_function('cartd_line_release', line_release)
redis.register_function('cartd_line_grown', line_grown)
redis.register_function{function_name = 'cartd_cart_lines', callback = cart_lines_of,
                        flags = {'no-writes'}}
redis.register_function('cartd_checkout_freeze', checkout_freeze)
redis.register_function('cartd_checkout_hold', checkout_hold)
redis.register_function('cartd_checkout_release', checkout_release)
redis.register_function('cartd_checkout_close', checkout_close)
redis.register_function('cartd_checkout_thaw', checkout_thaw)
redis.register_function('cartd_checkout_unmark', checkout_unmark)
redis.register_function('cartd_abandon_cart', abandon_cart)
