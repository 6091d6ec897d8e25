-- add: POST /add-to-cart setting a line (and its hold) in a random cart of the pool.
package.path = os.getenv("CARTD_BENCH_DIR") .. "/wrk/?.lua;" .. package.path
local common = require("common")
request = common.add_to_cart
done = common.done
delay = common.delay
