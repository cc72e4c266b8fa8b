#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# REST benchmark: requests/s and p99 latency of the connect routes (sqlite, synchronous=FULL) for
#   GET  one run record (with its relations) and
#   POST a new run (unique run_id per request, durable commit),
# next to nginx serving the same JSON body from a file, all on 127.0.0.1 in the same run.
# Usage: run_bench.sh SERVER_BINARY   (env: DURATION=5s ROUNDS=3 CONNECTIONS=64 WRK_THREADS=2
#   SERVER_THREADS=2 (I/O event loops) HANDLER_THREADS=16 (pool for blocking handlers; the
#   connect routes use none: reads run on the I/O threads, writes on the store's writer thread)
#   READ_CONNECTIONS=4 NGINX_WORKERS=2). The defaults are the server's and the store's own.
set -euo pipefail

SERVER=${1:?usage: run_bench.sh SERVER_BINARY}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-2}
SERVER_THREADS=${SERVER_THREADS:-2}
HANDLER_THREADS=${HANDLER_THREADS:-16}
READ_CONNECTIONS=${READ_CONNECTIONS:-4}
NGINX_WORKERS=${NGINX_WORKERS:-2}
HERE=$(cd "$(dirname "$0")" && pwd)

for tool in wrk nginx curl; do
  command -v "$tool" >/dev/null || [ -x "/usr/sbin/$tool" ] || {
    echo "bench_rest: '$tool' is missing (apt-get install wrk nginx-light curl)" >&2; exit 1; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

WORK=$(mktemp -d /tmp/synergos-bench-rest-XXXXXX)
SERVER_PID=""
NGINX_PID=""
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# --- the Synergos test server (connect routes on sqlite) ---
mkdir -p "$WORK/data" "$WORK/www"
"$SERVER" --data "$WORK/data" --port 0 --threads "$SERVER_THREADS" \
  --handler-threads "$HANDLER_THREADS" --read-connections "$READ_CONNECTIONS" --quiet > "$WORK/server.out" 2> "$WORK/server.err" &
SERVER_PID=$!
for _ in $(seq 1 100); do
  grep -q '^PORT ' "$WORK/server.out" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.err" >&2; exit 1; }
  sleep 0.1
done
PORT=$(sed -n 's/^PORT //p' "$WORK/server.out")
[ -n "$PORT" ] || { echo "bench_rest: the server did not report a port" >&2; exit 1; }
BASE="http://127.0.0.1:$PORT/ttp/connect"
post() { curl -sf -o /dev/null -X POST -H 'Content-Type: application/json' -d "$2" "$BASE$1"; }
post /collaborations '{"collab_id":"bench","mq":{"host":"127.0.0.1","ports":{"main":5672,"ui":15672},"secure":false}}'
post /collaborations/bench/projects '{"project_id":"p","action":"classify","incentives":{"tier_1":[],"tier_2":[]}}'
post /collaborations/bench/projects/p/experiments '{"expt_id":"e","model":[{"is_input":true,"l_type":"Linear","structure":{"in_features":15,"out_features":1},"activation":"sigmoid"}]}'
post /collaborations/bench/projects/p/experiments/e/runs '{"run_id":"r0","rounds":2,"epochs":1,"lr":0.001,"algorithm":"FedProx"}'
GET_PATH=/ttp/connect/collaborations/bench/projects/p/experiments/e/runs/r0
POST_PATH=/ttp/connect/collaborations/bench/projects/p/experiments/e/runs
curl -sf "http://127.0.0.1:$PORT$GET_PATH" > "$WORK/www/run.json"
# nginx workers run as an unprivileged user: let them read the body.
chmod 755 "$WORK" "$WORK/www"; chmod 644 "$WORK/www/run.json"

# --- nginx serving the same body from a file ---
NPORT=$(free_port)
cat > "$WORK/nginx.conf" <<CONF
daemon off;
worker_processes $NGINX_WORKERS;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  client_body_temp_path $WORK/nginx-body;
  proxy_temp_path $WORK/nginx-proxy;
  fastcgi_temp_path $WORK/nginx-fastcgi;
  uwsgi_temp_path $WORK/nginx-uwsgi;
  scgi_temp_path $WORK/nginx-scgi;
  server {
    listen 127.0.0.1:$NPORT;
    location = /run.json { root $WORK/www; default_type application/json; }
  }
}
CONF
"$NGINX" -c "$WORK/nginx.conf" -p "$WORK" 2> "$WORK/nginx.err" &
NGINX_PID=$!
for _ in $(seq 1 100); do
  curl -sf -o /dev/null "http://127.0.0.1:$NPORT/run.json" && break
  kill -0 "$NGINX_PID" 2>/dev/null || { cat "$WORK/nginx.err" >&2; exit 1; }
  sleep 0.1
done
curl -sf "http://127.0.0.1:$NPORT/run.json" > "$WORK/nginx-body.json" || true
cmp -s "$WORK/nginx-body.json" "$WORK/www/run.json" || { cat "$WORK/nginx-error.log" "$WORK/nginx.err" >&2; head -c 300 "$WORK/nginx-body.json" >&2;
  echo "bench_rest: nginx does not serve the same body" >&2; exit 1; }

# --- wrk runs (keep-alive is wrk's default) ---
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
run_wrk() {  # name, url, [lua script]
  local name=$1 url=$2 script=${3:-}
  local args=(-t"$WRK_THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency --timeout 5s)
  [ -n "$script" ] && args+=(-s "$script")
  wrk "${args[@]}" "$url" > "$WORK/$name.wrk" 2>&1
}
rps() { awk '/^Requests\/sec:/ {print $2}' "$WORK/$1.wrk"; }
p99_ms() {
  awk '$1 == "99%" { v=$2; if (v ~ /us$/) { sub(/us$/,"",v); v=v/1000 } else if (v ~ /ms$/) { sub(/ms$/,"",v) }
                      else if (v ~ /s$/) { sub(/s$/,"",v); v=v*1000 }; printf "%.3f", v }' "$WORK/$1.wrk"
}
non2xx() { awk '/Non-2xx or 3xx responses:/ {print $5}' "$WORK/$1.wrk"; }
errors() { awk '/Socket errors:/ {print}' "$WORK/$1.wrk"; }

# The machine is shared: alternate the cases for ROUNDS rounds and report medians, so a burst of
# background load does not land on one side only.
ROUNDS=${ROUNDS:-3}
for round in $(seq 1 "$ROUNDS"); do
  run_wrk "nginx_get_$round" "http://127.0.0.1:$NPORT/run.json"
  run_wrk "synergos_get_$round" "http://127.0.0.1:$PORT$GET_PATH"
  run_wrk "synergos_post_$round" "http://127.0.0.1:$PORT$POST_PATH" "$HERE/post_run.lua"
done

RUNS=$(curl -sf "http://127.0.0.1:$PORT$POST_PATH" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]))')

median() {  # case, metric function
  local values=""
  for round in $(seq 1 "$ROUNDS"); do values="$values $($2 "$1_$round")"; done
  python3 -c "import statistics,sys; print(f'{statistics.median(float(v) for v in sys.argv[1:]):.2f}')" $values
}
all_rounds() {
  local out=""
  for round in $(seq 1 "$ROUNDS"); do out="$out $($2 "$1_$round")"; done
  echo "$out"
}
NG=$(median nginx_get rps); SG=$(median synergos_get rps); SP=$(median synergos_post rps)
RATIO=$(python3 -c "print(f'{$SG / $NG:.2f}')")
echo
echo "REST benchmark: wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION (keep-alive), 127.0.0.1, $(nproc) cores, medians of $ROUNDS alternating rounds"
echo "  synergos: $SERVER_THREADS I/O threads, $HANDLER_THREADS handler threads, $READ_CONNECTIONS read connections, sqlite synchronous=FULL (WAL, one writer thread committing queued writes together), access log off"
echo "  nginx: $NGINX_WORKERS workers, access log off; load average before the run: $LOAD_BEFORE, after: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "  %-38s %12s %10s   %s\n" "case" "requests/s" "p99 ms" "per round (req/s)"
printf "  %-38s %12s %10s  %s\n" "nginx GET same body from a file" "$NG" "$(median nginx_get p99_ms)" "$(all_rounds nginx_get rps)"
printf "  %-38s %12s %10s  %s\n" "synergos GET one run (with relations)" "$SG" "$(median synergos_get p99_ms)" "$(all_rounds synergos_get rps)"
printf "  %-38s %12s %10s  %s\n" "synergos POST create run (durable)" "$SP" "$(median synergos_post p99_ms)" "$(all_rounds synergos_post rps)"
echo "  GET ratio synergos/nginx: $RATIO (goal >= 0.50); p99 goal < 5 ms for both synergos cases"
echo "  p99 per round (ms): nginx$(all_rounds nginx_get p99_ms) | get$(all_rounds synergos_get p99_ms) | post$(all_rounds synergos_post p99_ms)"
for round in $(seq 1 "$ROUNDS"); do
  for n in nginx_get synergos_get synergos_post; do
    bad=$(non2xx "${n}_$round"); [ -n "$bad" ] && echo "  ${n} round $round: $bad non-2xx responses"
    e=$(errors "${n}_$round"); [ -n "$e" ] && echo "  ${n} round $round: $e"
  done
done
echo "  runs stored after the POST rounds: $RUNS (1 seeded + one per 201)"
# The writer's side of the POSTs, from the server's GET /metrics (all rounds together).
curl -sf "http://127.0.0.1:$PORT/metrics" | python3 "$HERE/writer_stats.py" ||
  echo "  store writer: no GET /metrics from the server"
