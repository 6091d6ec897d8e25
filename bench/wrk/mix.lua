-- mix: 9 GET /get-cart for each POST /add-to-cart.
package.path = os.getenv("CARTD_BENCH_DIR") .. "/wrk/?.lua;" .. package.path
local common = require("common")
local n = 0
request = function()
  n = n + 1
  if n % 10 == 0 then return common.add_to_cart() end
  return common.get_cart()
end
done = common.done
delay = common.delay
