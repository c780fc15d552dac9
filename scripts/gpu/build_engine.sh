#!/usr/bin/env bash
# Run ON THE GPU MACHINE from the repo root, after fetch_debs.sh ran here and .gpu-debs/
# travelled along: unpacks the .debs into .gpu-prefix/ (never into /), then configures the
# engine-only build (LONGSANA_BUILD_SERVER=OFF) against the LibTorch inside the installed
# PyTorch, with CUDA kernels for sm_90, and builds the given targets (default: all).
#   source scripts/gpu/env.sh   # afterwards, for LD_LIBRARY_PATH when running binaries
set -euo pipefail
cd "$(dirname "$0")/../.."

prefix="$PWD/.gpu-prefix"
if [ ! -d "$prefix/usr" ]; then
  mkdir -p "$prefix"
  for deb in .gpu-debs/*.deb; do dpkg -x "$deb" "$prefix"; done
fi
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
abi=$(python3 -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
if [ "$abi" != "1" ]; then
  echo "this PyTorch uses the pre-C++11 libstdc++ ABI; Debian's Abseil needs the C++11 ABI" >&2
  exit 1
fi
source scripts/gpu/env.sh

cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DLONGSANA_BUILD_SERVER=OFF -DLONGSANA_BUILD_SANITIZED=OFF -DLONGSANA_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=90 \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$prefix/usr;$prefix/usr/lib/x86_64-linux-gnu/cmake"
if [ $# -eq 0 ]; then
  cmake --build build-gpu -j "$(nproc)"
else
  cmake --build build-gpu -j "$(nproc)" --target "$@"
fi
