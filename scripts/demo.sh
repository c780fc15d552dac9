#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, and runs the demo on the
# tiny checkpoint embedded in tests/testdata.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/deps.sh build
scripts/build.sh longsana-inspect
echo
echo "== longsana-inspect tests/testdata/tiny-longsana"
build/bin/longsana-inspect tests/testdata/tiny-longsana
