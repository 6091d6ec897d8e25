-- new: POST /add-to-cart naming no cart: the first line of a new cart, each request.
package.path = os.getenv("CARTD_BENCH_DIR") .. "/wrk/?.lua;" .. package.path
local common = require("common")
request = common.new_cart
done = common.done
