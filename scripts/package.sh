#!/usr/bin/env bash
# Packages every crate as the platform team would publish it to the internal
# registry `floyo` (see the README), without publishing anything. The
# registry's index is replaced by an empty local one, so this runs offline
# from the internal registry; dependencies between our crates come from the
# workspace itself, never from crates.io.
set -euo pipefail
cd "$(dirname "$0")/.."

index="$PWD/target/floyo-index"
if [ ! -f "$index/config.json" ]; then
  rm -rf "$index"
  mkdir -p "$index"
  printf '{"dl":"https://cargo.floyo.invalid/api/v1/crates","api":"https://cargo.floyo.invalid"}\n' > "$index/config.json"
  git -C "$index" init -q
  git -C "$index" add config.json
  git -C "$index" -c user.name=ci -c user.email=ci@localhost commit -qm "empty index"
fi
CARGO_REGISTRIES_FLOYO_INDEX="file://$index" cargo package --workspace --no-verify --locked "$@"
