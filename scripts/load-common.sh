# Shared by scripts/compare.sh and scripts/memory.sh (sourced, not run).

# wrk, from Debian's package when it is missing.
need_wrk() {
  if ! command -v wrk >/dev/null 2>&1; then
    echo "== installing wrk (Debian's package)"
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  fi
}

# The example's config with rate limits no load run reaches, written to $1.
never_limiting_config() {
  sed -e 's/^rate = .*/rate = 1000000000/' -e 's/^burst = .*/burst = 1000000000/' \
    -e 's/^period = .*/period = "1s"/' examples/guardrails.toml > "$1"
}

# Waits (up to 5 s) until something listens on 127.0.0.1:$1.
wait_for_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}
