#!/usr/bin/env bash
# The test command of the README: every unit, integration, example and doc
# test of the workspace. Starts what the tests need on a fresh machine:
# a Redis server on 127.0.0.1:6379 unless REDIS_URL names another, a
# PostgreSQL on 127.0.0.1:5432 unless DATABASE_URL names another, and
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

# A PostgreSQL for the database pool tests, unless one answers on
# 127.0.0.1:5432 or DATABASE_URL names another: a throwaway cluster with
# trust authentication (tests only), from Debian's package.
pg_port="${GUARDRAILS_TEST_PG_PORT:-5432}"
pg_up() { (exec 3<>"/dev/tcp/127.0.0.1/$pg_port") 2>/dev/null; }
if [ -z "${DATABASE_URL:-}" ] && ! pg_up; then
  if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "== installing postgresql (the database pool tests need one)"
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
    # The package may start its own cluster (password auth): ours instead.
    for conf in /etc/postgresql/*/main; do
      [ -d "$conf" ] && pg_ctlcluster --skip-systemctl-redirect "$(basename "$(dirname "$conf")")" main stop 2>/dev/null || true
    done
  fi
  pg_bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
  pg_data="/tmp/guardrails-test-pg-$pg_port"
  echo "== starting PostgreSQL on 127.0.0.1:$pg_port ($pg_data)"
  if [ ! -s "$pg_data/PG_VERSION" ]; then
    rm -rf "$pg_data" && install -d -o postgres -g postgres "$pg_data"
    su postgres -s /bin/sh -c "$pg_bin/initdb -A trust -U postgres -D $pg_data" >/dev/null
  fi
  su postgres -s /bin/sh -c "$pg_bin/pg_ctl -D $pg_data -l $pg_data/log -w \
    -o '-c listen_addresses=127.0.0.1 -p $pg_port -k /tmp' start" >/dev/null
  pg_up || { echo "PostgreSQL did not come up; see $pg_data/log" >&2; exit 1; }
fi
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:$pg_port/postgres}"

# Prometheus's checker, for the exposition and the alert rules; unpacked
# from Debian's package, no server installed or started.
PROMTOOL="$(bash scripts/promtool.sh)"
export PROMTOOL

cargo test --locked --workspace --all-features "$@"
