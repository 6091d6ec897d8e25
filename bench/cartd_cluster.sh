#!/usr/bin/env bash
# cartd's cost per request on a Redis Cluster, against a standalone Redis, in one run on
# one machine: cartd (one event loop) against a standalone redis-server, a cluster of one
# primary (every slot on one node: the cost of cluster mode itself) and a cluster of three
# primaries; for each, a pool of 1000 carts made through cartd, then wrk with
# bench/wrk/add.lua (a line change: one to three single-slot steps on a cluster, one call on
# standalone), new.lua (the first line of a new cart: two steps on a cluster), get.lua
# (one HGETALL either way) and mix.lua (9 gets to 1 line change, as the main bench's mix),
# each as fast as it goes; then add and mix again, paced ("@paced": each connection
# pauses CARTD_BENCH_PACE_MS, 15 by default, before each request, about 4000 requests/s
# for every setup): the CPU a request costs at a load that every setup carries. At
# saturation a faster setup batches more requests per system call, on both sides, and
# so costs less per request than it would at the same load (on 2 cores shared with wrk,
# that alone moves CPU per request by a third). Prints one table; the ratio columns are the standalone requests/s over this one's (the
# cost per request, x standalone) and this one's CPU per request (cartd and the
# redis-servers) over standalone's, and the next two that CPU time per request of cartd
# and of the redis-servers (all nodes), then
# the FCALLs per request the nodes ran (INFO commandstats: the steps of a change, and the
# housekeeping's calls), then all the commands per request the nodes ran, those that
# functions call included (steadier than requests/s on a busy machine). A second table
# says what an idle cartd's housekeeping costs each setup: commands a second, and CPU.
# Usage: bench/cartd_cluster.sh CARTD_BINARY DIR SECONDS   (called by scripts/bench)
set -euo pipefail
cartd=$1 dir=$2 seconds=$3
root=$(cd "$(dirname "$0")/.." && pwd)
rows=1000
pool=1000
connections=64
# The paced runs: each connection's pause between requests (ms), given to wrk's scripts
# for those runs only.
pace_ms=${CARTD_BENCH_PACE_MS:-15}
unset CARTD_BENCH_PACE_MS
mkdir -p "$dir"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# A port nothing listens on, with its cluster bus port (+10000) free too, both below the
# kernel's ephemeral range (32768 up, where the run's own client connections take their
# local ports: a port taken so is not listened on, yet cannot be bound).
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 2700))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
    (exec 3<>"/dev/tcp/127.0.0.1/$((p + 10000))") 2>/dev/null || { echo "$p"; return; }
  done
}
wait_ping() { for _ in $(seq 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }

{
  echo "["
  for ((i = 0; i < rows; i++)); do
    sep=","; [ $i -eq $((rows - 1)) ] && sep=""
    echo "{\"inventory_id\":\"inv$i\",\"product_id\":\"p$i\",\"name\":\"Item $i\",\"price_cents\":1000,\"on_hand\":100000000}$sep"
  done
  echo "]"
} >"$dir/catalog.json"

# redis-server NAME [cluster]: starts one node; its port in $port (not a subshell: the
# pid must reach the cleanup).
node() {
  local name=$1
  port=$(free_port)
  rm -rf "${dir:?}/$name"  # a DIR used before: its nodes.conf would bring back the old cluster
  mkdir -p "$dir/$name"
  local extra=()
  [ "${2:-}" = cluster ] && extra=(--cluster-enabled yes --cluster-config-file "$dir/$name/nodes.conf")
  redis-server --port "$port" --bind 127.0.0.1 --dir "$dir/$name" --save "" --appendonly no \
    --logfile "$dir/$name/redis.log" "${extra[@]}" >/dev/null &
  pids+=($!)
  servers+=($!)
  server_ports+=("$port")
  wait_ping "$port"
}

# cluster N: N primaries sharing the slots evenly; the first node's port in $port.
cluster() {
  local n=$1 ports=() i
  servers=() server_ports=()
  for ((i = 0; i < n; i++)); do
    node "c$n-$i" cluster
    ports+=("$port")
  done
  for ((i = 0; i < n; i++)); do
    redis-cli -p "${ports[$i]}" CLUSTER ADDSLOTSRANGE $((i * 16384 / n)) $(((i + 1) * 16384 / n - 1)) >/dev/null
    [ "$i" -gt 0 ] && redis-cli -p "${ports[0]}" CLUSTER MEET 127.0.0.1 "${ports[$i]}" >/dev/null
  done
  for _ in $(seq 200); do
    local ok=0
    for p in "${ports[@]}"; do redis-cli -p "$p" CLUSTER INFO | grep -q cluster_state:ok && ok=$((ok + 1)); done
    [ "$ok" -eq "$n" ] && break
    sleep 0.1
  done
  sleep 1  # every node's view of the others settles
  port=${ports[0]}
}

# The sum over the redis-servers of the setup being measured of one number of INFO
# SECTION, picked out by the sed expression EXPR: info_sum SECTION EXPR.
info_sum() {
  local sum=0 p n
  for p in "${server_ports[@]}"; do
    n=$(redis-cli -p "$p" INFO "$1" | tr -d '\r' | sed -n "$2")
    sum=$((sum + ${n:-0}))
  done
  echo "$sum"
}
# FCALLs run so far; all commands run so far, those that functions call included.
fcalls() { info_sum commandstats 's/^cmdstat_fcall:calls=\([0-9]*\).*/\1/p'; }
commands() { info_sum stats 's/^total_commands_processed:\([0-9]*\)/\1/p'; }

# CPU time (user + system, in clock ticks) of processes.
ticks() {
  local sum=0 p
  for p in "$@"; do sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo "$sum"
}

results=() idle=()
idle_seconds=5
servers=() server_ports=()  # the redis-servers of the setup being measured
measure() {  # name redis_port
  local name=$1 port=$2 http
  http=$(free_port)
  rm -f "$dir/cartd.db"*
  "$cartd" --listen "127.0.0.1:$http" --redis "redis://127.0.0.1:$port" --db "sqlite:$dir/cartd.db" \
    --catalog "$dir/catalog.json" --threads 1 --log-level warn 2>>"$dir/cartd-$name.log" &
  local pid=$!
  pids+=($pid)
  for _ in $(seq 300); do curl -sf -o /dev/null "http://127.0.0.1:$http/readyz" && break; sleep 0.1; done
  python3 - "$http" "$pool" "$rows" >"$dir/ids.txt" <<'EOF'
import http.client, json, sys
port, pool, rows = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
c = http.client.HTTPConnection("127.0.0.1", port)
for i in range(pool):
    sid = None
    for l in range(3):  # the lines add.lua changes: rows (3i + l) % rows
        row = (3 * i + l) % rows
        body = json.dumps({"product_id": f"p{row}", "inventory_id": f"inv{row}", "quantity": 1})
        c.request("POST", "/add-to-cart", body, {"cart-session-id": sid} if sid else {})
        r = c.getresponse()
        data = json.loads(r.read())
        sid = data["cartSessionId"]
    print(sid)
EOF
  # Idle: what the housekeeping alone sends (the pool's holds in place, nothing changing).
  sleep 1
  local i0 ic0 ir0 i1 ic1 ir1
  i0=$(commands) ic0=$(ticks "$pid") ir0=$(ticks "${servers[@]}")
  sleep "$idle_seconds"
  i1=$(commands) ic1=$(ticks "$pid") ir1=$(ticks "${servers[@]}")
  idle+=("$(awk -v n="$name" -v k=$((i1 - i0)) -v c=$((ic1 - ic0)) -v r=$((ir1 - ir0)) \
    -v s="$idle_seconds" -v hz="$(getconf CLK_TCK)" -v info="${#server_ports[@]}" \
    'BEGIN {printf "| %-10s | %10.0f | %9.1f | %9.1f |", n, (k - info) / s, c * 100 / hz / s, r * 100 / hz / s}')")
  local script line
  for script in add new get mix add@paced mix@paced; do
    local wrk_script=${script%@paced} pace=()
    [ "$script" != "$wrk_script" ] && pace=(CARTD_BENCH_PACE_MS="$pace_ms")
    env "${pace[@]}" CARTD_BENCH_DIR="$root/bench" CARTD_BENCH_IDS="$dir/ids.txt" CARTD_BENCH_ROWS=$rows \
      wrk -t2 -c"$connections" -d2s -s "$root/bench/wrk/$wrk_script.lua" "http://127.0.0.1:$http" >/dev/null 2>&1 || true
    local c0 r0 f0 c1 r1 f1 n hz
    c0=$(ticks "$pid") r0=$(ticks "${servers[@]}") f0=$(fcalls) k0=$(commands)
    line=$(env "${pace[@]}" CARTD_BENCH_DIR="$root/bench" CARTD_BENCH_IDS="$dir/ids.txt" CARTD_BENCH_ROWS=$rows \
      wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$root/bench/wrk/$wrk_script.lua" \
      "http://127.0.0.1:$http" | grep '^{"requests"')
    c1=$(ticks "$pid") r1=$(ticks "${servers[@]}") f1=$(fcalls) k1=$(commands)
    # CPU per request, in microseconds, of cartd and of the redis-servers together.
    n=$(sed 's/.*"requests": \([0-9]*\).*/\1/' <<<"$line") hz=$(getconf CLK_TCK)
    results+=("$name $script $(awk -v c=$((c1 - c0)) -v r=$((r1 - r0)) -v f=$((f1 - f0)) \
      -v k=$((k1 - k0)) -v n="$n" -v hz="$hz" \
      'BEGIN {printf "%.1f %.1f %.2f %.1f", c * 1e6 / hz / n, r * 1e6 / hz / n, f / n, k / n}') $line")
  done
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

node standalone
measure standalone "$port"
cluster 1
measure cluster-1 "$port"
cluster 3
measure cluster-3 "$port"

echo "cartd on a Redis Cluster against standalone (--threads 1, wrk -t2 -c$connections -d${seconds}s, $pool carts x 3 lines):"
printf '| %-10s | %-9s | %10s | %8s | %8s | %6s | %12s | %12s | %13s | %13s | %10s | %12s |\n' redis route \
  "requests/s" "p50 ms" "p99 ms" errors "cost x std" "CPU x std" "cartd us/req" "redis us/req" \
  "fcalls/req" "commands/req"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ------------ ----------- ------------ ---------- ---------- \
  -------- -------------- -------------- --------------- --------------- ------------ --------------
for r in "${results[@]}"; do
  read -r name script cartd_us redis_us fcalls_per commands_per json <<<"$r"
  rps=$(sed 's/.*"rps": \([0-9.]*\).*/\1/' <<<"$json")
  read -r _ _ base_cartd base_redis _ _ base_json < <(printf '%s\n' "${results[@]}" | grep "^standalone $script ")
  base=$(sed 's/.*"rps": \([0-9.]*\).*/\1/' <<<"$base_json")
  cost=$(awk -v a="$base" -v b="$rps" 'BEGIN {printf "%.2f", a / b}')
  [ "${script%@paced}" != "$script" ] && cost=-  # the same load: requests/s tell nothing
  printf '| %-10s | %-9s | %10.0f | %8.2f | %8.2f | %6d | %12s | %12.2f | %13s | %13s | %10s | %12s |\n' "$name" "$script" "$rps" \
    "$(sed 's/.*"p50_ms": \([0-9.]*\).*/\1/' <<<"$json")" "$(sed 's/.*"p99_ms": \([0-9.]*\).*/\1/' <<<"$json")" \
    "$(sed 's/.*"errors": \([0-9]*\).*/\1/' <<<"$json")" "$cost" \
    "$(awk -v a="$cartd_us" -v b="$redis_us" -v c="$base_cartd" -v d="$base_redis" 'BEGIN {print (a + b) / (c + d)}')" \
    "$cartd_us" "$redis_us" "$fcalls_per" "$commands_per"
done

echo
echo "An idle cartd (the housekeeping only, for ${idle_seconds}s after the pool was made): the Redis commands a second the nodes ran (functions' own calls included), and the CPU of cartd and of the nodes, in % of a core:"
echo "| redis      | commands/s | cartd CPU | redis CPU |"
echo "|------------|-----------:|----------:|----------:|"
printf '%s\n' "${idle[@]}"
