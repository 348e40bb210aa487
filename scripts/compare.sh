#!/usr/bin/env bash
# Side-by-side load comparison, run by hand (not in CI):
#
#   bash scripts/compare.sh                # ROUNDS=3 DURATION=6s CONNECTIONS=32
#
# Three servers answer GET /api/me with a bearer token and a small JSON
# body: bare axum, the naive stack a user would assemble (tower_governor +
# tower-http TraceLayer + a jsonwebtoken middleware; tools/loadcmp) and the
# example service (examples/guarded_service.rs) with its config, rate
# limits raised so they never trip. Each server writes its log lines to
# /dev/null. wrk (-t1) loads one server at a time; the servers alternate
# round by round; medians of the rounds are printed, with the ratio of each
# to bare axum and to the naive stack.
#
# Two workloads: `one` (one token, one client: caches warm) and `many`
# (10 000 tokens from 10 000 client addresses through a trusted proxy, so
# no cache can carry the result).
#
# ROUTE=/api/recommendations loads the flag-gated route instead (the
# flag rolled out to 100 % in every server, so every answer is 200: the
# example's `ai_recommendations` evaluated per request; the naive stack
# a hand-written percentage check on a shared map).
#
# BEFORE=/path/to/guarded_service adds that build of the example (say, of
# the commit before a change) as a fourth server, `before`, alternating
# with the others: a change's before/after in one run.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-6s}
CONNECTIONS=${CONNECTIONS:-32}
ROUTE=${ROUTE:-/api/me}
USERS=${USERS:-10000}
PORT=${PORT:-39391}
WORK=$(mktemp -d /tmp/guardrails-compare.XXXXXX)
trap 'rm -rf "$WORK"; [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null || true' EXIT

# shellcheck source=scripts/load-common.sh
. scripts/load-common.sh
need_wrk

echo "== building (release)"
cargo build -q --release -p floyo-loadcmp
cargo build -q --release -p floyo-guardrails --all-features --example guarded_service --example mint_token
BIN=target/release

export GUARDRAILS_JWT_SECRET="compare-secret-0123456789-abcdefghijklmnop"
export GUARDRAILS_LISTEN="127.0.0.1:$PORT"
export RUST_LOG=info
TOKEN=$("$BIN/examples/mint_token" --sub user-1)
"$BIN/loadcmp" tokens "$USERS" "$ROUTE" > "$WORK/many.lua"

never_limiting_config "$WORK/guardrails.toml"
sed -i 's/^rollout_percentage = .*/rollout_percentage = 100/' "$WORK/guardrails.toml"

start() {
  case "$1" in
    bare) "$BIN/loadcmp" serve bare > /dev/null 2>&1 & ;;
    naive) "$BIN/loadcmp" serve naive > /dev/null 2>&1 & ;;
    guardrails | before)
      local bin="$BIN/examples/guarded_service"
      [ "$1" = before ] && bin=$BEFORE
      GUARDRAILS_CONFIG="$WORK/guardrails.toml" \
        GUARDRAILS__CLIENT_IP__TRUSTED_PROXIES='["127.0.0.1/32"]' \
        "$bin" > /dev/null 2>&1 & ;;
  esac
  SERVER=$!
  wait_for_port "$PORT" || { echo "$1 did not start" >&2; exit 1; }
}

stop() {
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  SERVER=
}

# CPU time the server has used so far, in clock ticks (user + system).
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$SERVER/stat"; }
TICK=$(getconf CLK_TCK)

# "req/s p50_ms p99_ms requests" of one wrk run.
load() {
  local workload=$1 out
  if [ "$workload" = one ]; then
    out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency \
      -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT$ROUTE")
  else
    out=$(wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$WORK/many.lua" \
      "http://127.0.0.1:$PORT$ROUTE")
  fi
  if echo "$out" | grep -q "Non-2xx"; then
    echo "non-2xx answers under load: $out" >&2
    exit 1
  fi
  echo "$out" | awk '
    function ms(v) {
      if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
      if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
      if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
      return v
    }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    $1 == "Requests/sec:" { rps = $2 }
    / requests in / { n = $1 }
    END { printf "%s %s %s %s\n", rps, p50, p99, n }'
}

SERVERS="bare naive guardrails"
[ -n "${BEFORE:-}" ] && SERVERS="$SERVERS before"

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

for workload in one many; do
  for round in $(seq "$ROUNDS"); do
    for server in $SERVERS; do
      start "$server"
      # A short warm-up, not counted.
      wrk -t1 -c"$CONNECTIONS" -d1s -H "Authorization: Bearer $TOKEN" \
        "http://127.0.0.1:$PORT$ROUTE" > /dev/null
      t0=$(cpu_ticks)
      result=$(load "$workload")
      t1=$(cpu_ticks)
      # The server's CPU time per request, in µs (what it costs whatever
      # share of the two cores the load generator leaves it).
      cpu=$(echo "$result" | awk -v t=$((t1 - t0)) -v hz="$TICK" '{ printf "%.2f", t * 1e6 / hz / $4 }')
      echo "$server $result $cpu" >> "$WORK/$workload.txt"
      stop
      echo "   $workload round $round: $server $(tail -1 "$WORK/$workload.txt" | cut -d' ' -f2-) (req/s p50 p99 requests cpu-us/req)"
    done
  done
done

echo
echo "GET $ROUTE; wrk -t1 -c$CONNECTIONS -d$DURATION, $ROUNDS alternating rounds, medians; $(nproc) cores"
for workload in one many; do
  case $workload in
    one) echo "## one token, one client" ;;
    many) echo "## $USERS tokens from $USERS client addresses (trusted proxy)" ;;
  esac
  printf "| %-10s | %9s | %8s | %8s | %7s | %8s | %12s |\n" server "req/s" "p50 ms" "p99 ms" "vs bare" "vs naive" "CPU µs/req"
  printf "|%s|%s|%s|%s|%s|%s|%s|\n" "------------" "-----------" "----------" "----------" "---------" "----------" "--------------"
  declare -A RPS=()
  for server in $SERVERS; do
    RPS[$server]=$(awk -v s="$server" '$1 == s { print $2 }' "$WORK/$workload.txt" | median)
  done
  for server in $SERVERS; do
    p50=$(awk -v s="$server" '$1 == s { print $3 }' "$WORK/$workload.txt" | median)
    p99=$(awk -v s="$server" '$1 == s { print $4 }' "$WORK/$workload.txt" | median)
    cpu=$(awk -v s="$server" '$1 == s { print $6 }' "$WORK/$workload.txt" | median)
    awk -v s="$server" -v r="${RPS[$server]}" -v b="${RPS[bare]}" -v n="${RPS[naive]}" \
      -v p50="$p50" -v p99="$p99" -v cpu="$cpu" \
      'BEGIN { printf "| %-10s | %9.0f | %8.2f | %8.2f | %7.2f | %8.2f | %12.2f |\n", s, r, p50, p99, r / b, r / n, cpu }'
  done
  unset RPS
  echo
done
