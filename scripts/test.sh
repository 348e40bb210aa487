#!/usr/bin/env bash
# The test command of the README: every unit, integration, example and doc
# test of the workspace. Starts what the tests need on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --locked --workspace --all-features "$@"
