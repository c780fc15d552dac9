#!/usr/bin/env bash
# The README's test command: installs what is missing (Debian packages, idempotent),
# builds everything and runs the whole CTest suite (unit, model, server, e2e, asan, fuzz,
# browser; GPU tests skip without a device).
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
scripts/deps.sh test
scripts/build.sh
built=$(date +%s)
echo "build: $((built - start)) s"

cd build
ctest --output-on-failure -j "${LONGSANA_TEST_JOBS:-2}" --timeout 1500 "$@"
echo "tests: $(( $(date +%s) - built )) s"
