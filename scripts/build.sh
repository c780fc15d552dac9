#!/usr/bin/env bash
# Configures and builds longsana-serve in ./build (RelWithDebInfo, Ninja, -j2).
#   scripts/build.sh [TARGET...]   # default: everything
# Re-running is incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs="${LONGSANA_JOBS:-2}"
if [ ! -f build/build.ninja ]; then
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo ${LONGSANA_CMAKE_ARGS:-}
fi
if [ $# -eq 0 ]; then
  cmake --build build -j "$jobs"
else
  cmake --build build -j "$jobs" --target "$@"
fi
