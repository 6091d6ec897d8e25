-- common.lua: what the wrk scenarios share: the pool of cart ids, random picks, and a
-- done() that prints one JSON line of results for scripts/bench to collect.
local M = {}

local ids = {}
for line in io.lines(os.getenv("CARTD_BENCH_IDS")) do ids[#ids + 1] = line end
local rows = tonumber(os.getenv("CARTD_BENCH_ROWS") or "1000")
math.randomseed(os.time() + math.floor(os.clock() * 1e6))

function M.random_id() return ids[math.random(#ids)] end

-- bench/prepare gave cart i (0-based) lines on rows (3i + l) % rows, l = 0..2.
local lines_per_cart = 3

function M.get_cart()
  return wrk.format("GET", "/get-cart", {["cart-session-id"] = M.random_id()})
end

-- Sets one of a random cart's lines to 1-3 units: the hold grows, shrinks or stays,
-- and the cart keeps its 3 lines, as a shopper changing quantities would.
function M.add_to_cart()
  local i = math.random(#ids)
  local row = ((i - 1) * lines_per_cart + math.random(lines_per_cart) - 1) % rows
  local body = string.format('{"product_id":"p%d","inventory_id":"inv%d","quantity":%d}', row, row,
                             math.random(3))
  return wrk.format("POST", "/add-to-cart",
                    {["cart-session-id"] = ids[i], ["Content-Type"] = "application/json"}, body)
end

-- The first line of a new cart (no cart-session-id): a shopper's first add, the request a
-- drop is made of. Each request makes a cart of 1 unit on a random row.
function M.new_cart()
  local row = math.random(rows) - 1
  local body = string.format('{"product_id":"p%d","inventory_id":"inv%d","quantity":1}', row, row)
  return wrk.format("POST", "/add-to-cart", {["Content-Type"] = "application/json"}, body)
end

-- CARTD_BENCH_PACE_MS: each connection pauses that long before each request, so the
-- offered load is about connections / (pause + latency), the same for every setup that
-- keeps up: the CPU a request costs at a load both carry, rather than at saturation
-- (where a setup that is faster batches more per system call and so costs less).
local pace = tonumber(os.getenv("CARTD_BENCH_PACE_MS") or "")
if pace then M.delay = function() return pace end end

function M.done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "rps": %.1f, "p50_ms": %.3f, "p99_ms": %.3f, "p999_ms": %.3f, "errors": %d}\n',
    summary.requests, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    e.connect + e.read + e.write + e.status + e.timeout))
end

return M
