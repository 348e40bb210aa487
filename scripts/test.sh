#!/usr/bin/env bash
# The test command of the README: every unit, integration, example and doc
# test of the workspace. Starts what the tests need on a fresh machine:
# a Redis server on 127.0.0.1:6379 unless REDIS_URL names another, and
# promtool.
set -euo pipefail
cd "$(dirname "$0")/.."

redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }

if [ -z "${REDIS_URL:-}" ] && ! redis_up; then
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "== installing redis-server (the Redis backend tests need one)"
    apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
  fi
  echo "== starting redis-server on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --logfile /tmp/guardrails-test-redis.log
  for _ in $(seq 50); do redis_up && break; sleep 0.1; done
  redis_up || { echo "redis-server did not come up; see /tmp/guardrails-test-redis.log" >&2; exit 1; }
fi

# Prometheus's checker, for the exposition and the alert rules; unpacked
# from Debian's package, no server installed or started.
PROMTOOL="$(bash scripts/promtool.sh)"
export PROMTOOL

cargo test --locked --workspace --all-features "$@"
