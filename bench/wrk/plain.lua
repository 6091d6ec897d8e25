-- plain: GET of the path wrk was given (the HTTP ceilings: /healthz, nginx).
package.path = os.getenv("CARTD_BENCH_DIR") .. "/wrk/?.lua;" .. package.path
done = require("common").done
