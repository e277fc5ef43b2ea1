#!/usr/bin/env bash
# Cost per operation against the number of items already cached and the number of connections.
# Usage: bench/scaling.sh 'SERVER COMMAND with {PORT}' [SECS]
# For each case: start the server pinned to core 0, optionally preload N items (load_items.py), run
# memcaslap workload a (90% get / 10% set, 32-byte values) pinned to core 1, print ops/s and the
# server's CPU microseconds per operation. Loopback only; every run is bounded by SECS.
set -euo pipefail
SPEC=$1; SECS=${2:-6}; PORT=${PORT:-22499}
HERE=$(cd "$(dirname "$0")" && pwd)
LOAD=${LOAD_ITEMS:-$HERE/../../shared/bench/load_items.py}
HZ=$(getconf CLK_TCK)
CFG=$(mktemp); printf 'key\n16 16 1\nvalue\n32 32 1\ncmd\n0 0.1\n1 0.9\n' > "$CFG"
trap 'rm -f "$CFG"; [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null || true' EXIT
run() { # items conns
  local cmd=${SPEC//\{PORT\}/$PORT}
  taskset -c 0 $cmd >/dev/null 2>&1 & PID=$!
  for _ in $(seq 50); do (echo > /dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
  [ "$1" -gt 0 ] && python3 "$LOAD" 127.0.0.1 "$PORT" "$PID" "$1" 100 >/dev/null
  local t0; t0=$(awk '{print $14+$15}' /proc/$PID/stat)
  local out; out=$(taskset -c 1 memcaslap -s 127.0.0.1:$PORT -T 1 -c "$2" -w 2k -t "${SECS}s" -F "$CFG" 2>&1 || true)
  local t1; t1=$(awk '{print $14+$15}' /proc/$PID/stat)
  local ops; ops=$(echo "$out" | awk '/^Run time:/ {for(i=1;i<=NF;i++) if($i=="Ops:") v=$(i+1)} END{print v+0}')
  local tps; tps=$(echo "$out" | awk '/^Run time:/ {for(i=1;i<=NF;i++) if($i=="TPS:") v=$(i+1)} END{print v+0}')
  awk -v i="$1" -v c="$2" -v o="$ops" -v t="$tps" -v d="$((t1 - t0))" -v hz="$HZ" \
    'BEGIN{printf "items=%-8d conns=%-5d ops/s=%-8d cpu_us/op=%.2f\n", i, c, t, (o>0? d/hz*1e6/o : 0)}'
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
}
run 0 50; run 1000 50; run 1000000 50; run 0 10; run 0 1000
