#!/usr/bin/env bash
# The example's memory under many clients, run by hand (not in CI):
#
#   bash scripts/memory.sh          # USERS=100000 REQUESTS=1000000
#
# Starts the example service (limits that never trip, a trusted proxy), sends
# REQUESTS requests from USERS distinct tokens and client addresses with wrk,
# and prints the resident set size before and after, beside the bound
# documented in the README: base + per-key bytes × keys held by each
# policy (at most rate_limit.max_keys) + the token cache.
set -euo pipefail
cd "$(dirname "$0")/.."

USERS=${USERS:-100000}
REQUESTS=${REQUESTS:-1000000}
PORT=${PORT:-39396}
WORK=$(mktemp -d /tmp/guardrails-memory.XXXXXX)
trap 'rm -rf "$WORK"; [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null || true' EXIT

# shellcheck source=scripts/load-common.sh
. scripts/load-common.sh
need_wrk
cargo build -q --release -p floyo-loadcmp
cargo build -q --release -p floyo-guardrails --all-features --example guarded_service
export GUARDRAILS_JWT_SECRET="memory-secret-0123456789-abcdefghijklmnop"
target/release/loadcmp tokens "$USERS" > "$WORK/many.lua"
never_limiting_config "$WORK/guardrails.toml"

GUARDRAILS_CONFIG="$WORK/guardrails.toml" GUARDRAILS_LISTEN="127.0.0.1:$PORT" RUST_LOG=info \
  GUARDRAILS__CLIENT_IP__TRUSTED_PROXIES='["127.0.0.1/32"]' \
  target/release/examples/guarded_service > /dev/null 2>&1 &
SERVER=$!
wait_for_port "$PORT" || { echo "the example did not start" >&2; exit 1; }
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$SERVER/status"; }
# One request first, so everything built lazily on the first request is
# in the base.
wrk -t1 -c1 -d1s "http://127.0.0.1:$PORT/api/health" > /dev/null
BASE=$(rss)
sent=0
while [ "$sent" -lt "$REQUESTS" ]; do
  n=$(wrk -t1 -c32 -d5s -s "$WORK/many.lua" "http://127.0.0.1:$PORT/api/me" | awk '/requests in/ { print $1 }')
  sent=$((sent + n))
  echo "   $sent requests, RSS $(rss) KiB"
done
AFTER=$(rss)
echo "users $USERS, requests $sent: RSS base $BASE KiB, after $AFTER KiB, growth $((AFTER - BASE)) KiB"
