-- release.lua: carts that end without an order. An expired cart needs nothing released:
-- Redis deletes it at its deadline, and its holds end with their buckets (logical
-- expiry, see holds.lua). Abandoning returns the units at once.

-- cartd_expired: records that a cart expired (a keyspace event saw Redis delete it):
-- remembers why it ended and appends one 'expired' event, once, however many cartd
-- instances heard of it.
-- KEYS[1] the cart
-- ARGV[1] session id
-- Returns 1 if this call recorded it, 0 if the cart is live or was recorded already; on
-- a Redis Cluster, {1, inventory_id...} when the cart waited on rows (its w: set): the
-- caller leaves their lines, which the rows cannot do for a cart in another slot.
local function expired(keys, args)
  local sid = args[1]
  if redis.call('EXISTS', keys[1]) == 1 then return 0 end
  if not redis.call('SET', gone_key(sid), 'expired', 'NX', 'PX', GONE_TTL_MS) then return 0 end
  cart_event(sid, 'expired', nil)
  local waited = redis.call('SMEMBERS', waits_key(sid))
  if #waited == 0 then return 1 end
  redis.call('DEL', waits_key(sid))
  return {1, unpack(waited)}
end

-- cartd_abandon: the shopper gives the cart up; its units return at once.
-- KEYS[1] the cart   ARGV[1] session id
-- Returns {'abandoned', cart_view before release, units returned},
-- {'checkout_in_progress'} (nothing changes), or {'expired' | 'unknown' | 'checked_out'}
-- when there is no live cart.
local function abandon(keys, args)
  local sid, ck, now = args[1], keys[1], now_ms()
  local view = cart_view(ck, now)
  if not view then return {missing_cart(sid)} end
  if redis.call('HEXISTS', ck, CHECKING_OUT) == 1 then return {'checkout_in_progress'} end
  local lines = cart_lines(redis.call('HGETALL', ck))
  local units = unhold_lines(lines, view[1])
  leave_all(ck, sid, now)
  for _, l in ipairs(lines) do pour(l[2], now) end  -- its units go to waiting carts first
  redis.call('DEL', ck)
  redis.call('SET', gone_key(sid), 'abandoned', 'PX', GONE_TTL_MS)
  cart_event(sid, 'abandoned', lines)
  return {'abandoned', view, units}
end

-- cartd_sweep: drops the expired buckets of stock rows that have some, oldest first, so
-- reserved counts (and the main DB) fall at the deadline without traffic.
-- KEYS: due indexes ({s<n>}#due) of one or more groups (all of them in one call on a
--       standalone Redis); on a Redis Cluster one group's (see indexes_of)
-- ARGV[1] most rows to settle per group in this call
-- ARGV[2], ARGV[3] the lease owner and its length in ms (see lease; absent: none)
-- Returns {rows, more (0|1), units}: more = 1 when a group's batch was full; units = the
-- held units returned.
local function sweep(keys, args)
  local now = now_ms()
  local batch = tonumber(args[1])
  local rows, more, units = 0, 0, 0
  for _, key in ipairs(indexes_of(keys, args[2])) do
    local due = {}
    if lease(key, args[2], tonumber(args[3])) then
      due = redis.call('ZRANGE', key, '-inf', '(' .. now, 'BYSCORE', 'LIMIT', 0, batch)
    end
    for _, inv in ipairs(due) do
      local e = redis.call('HGET', stock_key(inv), 'e')
      if e then
        units = units + drop_expired(inv, now, e)
      elseif redis.call('EXISTS', stock_key(inv)) == 1 then
        redis.call('ZREM', key, inv)  -- no bucket left
      end
      -- A row not here (lost with its node, until the mirror writes it again) is left in
      -- the index.
    end
    rows = rows + #due
    if #due == batch then more = 1 end
  end
  return {rows, more, units}
end

-- cartd_groups_with_work: which of a node's groups a group function has work in, so that
-- on a Redis Cluster an instance's housekeeping round costs one call per node rather than
-- a read of every group's index (src/functions/group_call.cpp). It only reads, and it is
-- the one function that names keys in ARGV rather than KEYS: the indexes of many slots
-- of the node it is sent to (allow-cross-slot-keys lets it read keys of several slots; a
-- key of a slot the node does not serve, one that moved, raises an error, caught here).
-- KEYS: none
-- ARGV[1] the lease owner asking (see lease)
-- ARGV[2] '' for set indexes (work: any member), else the highest score that is work,
--         as ZRANGE BYSCORE takes it ('(123': below 123)
-- ARGV[3...] the index keys
-- Returns the positions (1 = ARGV[3]) of the indexes with work whose lease is free or the
-- owner's, and of those it cannot tell (the node does not serve their slot now): the
-- caller looks at each of those the usual way, which follows a slot that moved.
local function groups_with_work(keys, args)
  local owner, upto = args[1], args[2]
  local out = {}
  for i = 3, #args do
    local index = args[i]
    local found
    if upto == '' then
      found = redis.pcall('EXISTS', index)
    else
      found = redis.pcall('ZRANGE', index, '-inf', upto, 'BYSCORE', 'LIMIT', 0, 1)
    end
    local work
    if type(found) == 'table' and found.err then
      work = true  -- not this node's now
    else
      work = (upto == '' and found == 1) or (upto ~= '' and #found > 0)
      if work then
        -- An error (the lease's key moved ahead of the index, in a slot being moved) is
        -- work too: the group is looked at the usual way.
        local holder = redis.pcall('GET', index .. ':lease')
        work = (type(holder) == 'table' and holder.err ~= nil) or not holder or holder == owner
      end
    end
    if work then table.insert(out, i - 2) end
  end
  return out
end

redis.register_function('cartd_expired', expired)
redis.register_function('cartd_abandon', abandon)
redis.register_function('cartd_sweep', sweep)
redis.register_function{function_name = 'cartd_groups_with_work', callback = groups_with_work,
                        flags = {'no-writes', 'allow-cross-slot-keys'}}
