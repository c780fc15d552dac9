#!/usr/bin/env bash
# scripts/gpu/check.sh in its CPU self-test mode: the same phases, binaries and flags at tiny
# sizes against this build, so that a wrong flag or a broken summary shows here and not in
# the few minutes a GPU machine is lent. Checks the summary table has every row.
#   gpu_check_selftest.sh BUILD_DIR
set -euo pipefail
build=$1
out="$build/gpu-check-selftest"
cd "$(dirname "$0")/../.."
LONGSANA_CHECK_SELFTEST=1 LONGSANA_BUILD_DIR="$build" LONGSANA_CHECK_OUT="$out" \
  scripts/gpu/check.sh
summary="$out/summary.md"
expect() {
  local n
  n=$(grep -c -- "$1" "$summary" || true)
  if [ "$n" != "$2" ]; then
    echo "FAIL: $2 row(s) matching '$1' expected in $summary, found $n" >&2
    exit 1
  fi
}
expect '^| DiT config 832x480, 10 latent frames, batch [12] |' 2
expect '^| VAE decode cpu bf16 64x64' 1
expect '^| VAE decode cpu fp32 64x64' 1
expect '^| Gemma-2 encode' 1
expect '^| engine, [12] sessions of 32x32, 41 frames (VAE bf16)' 2
expect '^| engine, [12] sessions of 32x32, 41 frames (VAE fp32)' 2
expect '^| phase gpu_tests | [0-9]* s | ok |' 1
expect '^| total | [0-9]* s | ok |' 1
echo "ok"
