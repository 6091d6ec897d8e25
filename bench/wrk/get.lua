-- get: GET /get-cart of a random cart from the pool.
package.path = os.getenv("CARTD_BENCH_DIR") .. "/wrk/?.lua;" .. package.path
local common = require("common")
request = common.get_cart
done = common.done
