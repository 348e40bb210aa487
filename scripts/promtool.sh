#!/usr/bin/env bash
# Prints the path of a `promtool` (Prometheus's checker for metrics and
# rules): the one on PATH, or the one from Debian's `prometheus` package,
# unpacked into target/tools without installing the package — so no
# Prometheus server is set up or left running.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v promtool >/dev/null 2>&1; then
  command -v promtool
  exit 0
fi
tools="$PWD/target/tools"
if [ ! -x "$tools/promtool" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (
    cd "$work"
    # apt-get download as root warns that _apt can't write here; harmless.
    apt-get download -qq prometheus 2>/dev/null \
      || { apt-get update -qq && apt-get download -qq prometheus 2>/dev/null; }
    dpkg-deb -x prometheus_*.deb unpacked
  ) >&2
  mkdir -p "$tools"
  cp "$work/unpacked/usr/bin/promtool" "$tools/promtool"
fi
echo "$tools/promtool"
