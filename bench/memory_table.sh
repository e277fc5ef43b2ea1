#!/usr/bin/env bash
# memory_table.sh: memory per item, side by side, with ../shared/bench/load_items.py (1,000,000 items,
# 13-byte keys, -t 1), for 10, 100 and 1,000-byte values, plus each server's idle RSS.
#
# Usage: bench/memory_table.sh LABEL=MOAT_BINARY... [-- VALUE_SIZES]
#   e.g. bench/memory_table.sh old=/tmp/base/.build/release/moat new=.build/release/moat
# memcached (Debian's /usr/bin/memcached) always runs first. Each (server, size) pair gets a fresh
# server with -m 2048 on a free loopback port, stopped afterwards (SIGTERM, then SIGKILL after 10 s).
# Prints one line per run and a table of bytes per item (RSS growth) with the ratio to memcached.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
load=${LOAD_ITEMS:-$here/../../shared/bench/load_items.py}
[ -f "$load" ] || load=$here/../shared/bench/load_items.py
items=${ITEMS:-1000000}
servers=("memcached=/usr/bin/memcached")
sizes=(10 100 1000)
while [ $# -gt 0 ]; do
  if [ "$1" = "--" ]; then shift; sizes=("$@"); break; fi
  servers+=("$1"); shift
done
user_flag=(); [ "$(id -u)" = 0 ] && user_flag=(-u nobody)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

declare -A result idle
for entry in "${servers[@]}"; do
  label=${entry%%=*}; binary=${entry#*=}
  for size in "${sizes[@]}"; do
    port=$(free_port)
    if [ "$label" = memcached ]; then
      "$binary" -m 2048 -p "$port" -l 127.0.0.1 -t 1 -U 0 "${user_flag[@]}" &
    else
      "$binary" serve --no-config -p "$port" -l 127.0.0.1 -m 2048 -t 1 -o security_log=off &
    fi
    pid=$!
    for _ in $(seq 1 100); do
      python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), timeout=1).close()" 2>/dev/null && break
      sleep 0.1
    done
    sleep 2
    idle[$label]=$(rss_kb "$pid")
    line=$(timeout 900 python3 "$load" 127.0.0.1 "$port" "$pid" "$items" "$size")
    echo "$label value=$size idle_rss_kb=${idle[$label]} $line"
    result[$label,$size]=$(sed -n 's/.*bytes_per_item_delta=\([0-9.]*\).*/\1/p' <<<"$line")
    kill "$pid"; for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  done
done
printf '\n| values |'; for entry in "${servers[@]}"; do printf ' %s |' "${entry%%=*}"; done; printf '\n'
for size in "${sizes[@]}"; do
  printf '| %s B |' "$size"
  base=${result[memcached,$size]}
  for entry in "${servers[@]}"; do
    label=${entry%%=*}; v=${result[$label,$size]}
    if [ "$label" = memcached ]; then printf ' %s B/item |' "$v"; else printf ' %s (%.2fx) |' "$v" "$(echo "$v / $base" | bc -l)"; fi
  done
  printf '\n'
done
printf '| idle RSS |'; for entry in "${servers[@]}"; do printf ' %.1f MB |' "$(echo "${idle[${entry%%=*}]} / 1000" | bc -l)"; done; printf '\n'
