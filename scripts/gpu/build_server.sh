#!/usr/bin/env bash
# Builds the whole server (longsana-server, the `longsana` CLI; the tests and benchmarks too
# unless LONGSANA_BUILD_TESTS=OFF) on a machine with a C++ compiler, CMake, ninja, LibTorch
# and (optionally) CUDA, but none of our Debian -dev packages: those come from .gpu-debs/
# (scripts/gpu/fetch_debs.sh server, run on a Debian 12 machine with network), unpacked here
# into .gpu-prefix/, never into /.
#
#   scripts/gpu/build_server.sh [TARGET...]     # default: everything configured
#
# LibTorch: $LONGSANA_TORCH_PREFIX (an unpacked LibTorch distribution, or any prefix whose
# share/cmake or lib/cmake holds TorchConfig.cmake), else the PyTorch of `python3`. CUDA
# kernels are built when nvcc is found, for $LONGSANA_CUDA_ARCHITECTURES (default 90).
# Build folder: $LONGSANA_BUILD_DIR (default build-gpu).
#
# The binaries find the unpacked libraries through their RPATH (transitively: DT_RPATH), so
# running them needs no LD_LIBRARY_PATH and the machine's own programs never load ours.
# Fails with a clear message when the machine's glibc is older than those libraries need.
set -euo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
prefix="$root/.gpu-prefix"
build_dir="${LONGSANA_BUILD_DIR:-build-gpu}"
jobs="${LONGSANA_JOBS:-$(nproc)}"

fail() { echo "build_server: $*" >&2; exit 1; }
[ -d .gpu-debs ] || fail ".gpu-debs/ is missing: run scripts/gpu/fetch_debs.sh server on a Debian 12 machine and copy the folder here"
grep -qx libgrpc++-dev .gpu-debs/PROFILE 2>/dev/null ||
  fail ".gpu-debs/ holds the engine profile: run scripts/gpu/fetch_debs.sh server"
for tool in cmake ninja c++ readelf; do
  command -v "$tool" >/dev/null || fail "'$tool' is not installed (needs a C++ compiler, CMake, ninja, binutils)"
done

# 1. Unpack once (again when the .debs change).
stamp="$prefix/.unpacked-from"
want=$(ls .gpu-debs | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  rm -rf "$prefix"
  mkdir -p "$prefix"
  if command -v dpkg-deb >/dev/null; then
    for deb in .gpu-debs/*.deb; do dpkg-deb -x "$deb" "$prefix"; done
  else  # no dpkg (not Debian-like): a .deb is an ar archive with data.tar.* inside
    command -v ar >/dev/null || fail "neither dpkg-deb nor ar is installed"
    tmp=$(mktemp -d)
    for deb in .gpu-debs/*.deb; do
      (cd "$tmp" && ar x "$root/$deb" && tar -xf data.tar.* -C "$prefix" && rm -f ./*.tar.* debian-binary)
    done
    rm -rf "$tmp"
  fi
  echo "$want" > "$stamp"
fi
lib="$prefix/usr/lib/x86_64-linux-gnu"

# 2. glibc: the unpacked libraries' newest GLIBC_ symbol version against the machine's.
need=$({ find "$lib" "$prefix/usr/bin" -type f \( -name '*.so*' -o -perm -u+x \) -print0 2>/dev/null |
         xargs -0 readelf --dyn-syms --wide 2>/dev/null || true; } |  # scripts are no ELF: ignored
       grep -o 'GLIBC_2\.[0-9]*' | sort -t. -k2,2n -u | tail -1 || true)
have=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{ print $2 }')
need="${need#GLIBC_}"
if [ -n "$need" ] && [ -n "$have" ]; then
  if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -t. -k1,1n -k2,2n | head -1)" != "$need" ]; then
    fail "this machine has glibc $have; the Debian 12 libraries in .gpu-debs need glibc $need or newer (use a newer distribution, e.g. Ubuntu 24.04, or build on Debian 12)"
  fi
  echo "build_server: glibc $have (the unpacked libraries need $need)"
fi

# 3. LibTorch.
torch_prefix="${LONGSANA_TORCH_PREFIX:-}"
if [ -z "$torch_prefix" ]; then
  command -v python3 >/dev/null || fail "set LONGSANA_TORCH_PREFIX or install PyTorch for python3"
  torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)') ||
    fail "python3 cannot import torch: set LONGSANA_TORCH_PREFIX to a LibTorch folder"
  abi=$(python3 -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
  [ "$abi" = 1 ] || fail "this PyTorch uses the pre-C++11 libstdc++ ABI; Debian's libraries need the C++11 ABI (use a cxx11-abi LibTorch via LONGSANA_TORCH_PREFIX)"
fi
echo "build_server: LibTorch from $torch_prefix"

# 4. Configure. The multiarch include folder (opensslconf.h, ...) is a default search folder
# of the system compiler for /usr/include only: the prefix's is added after the system ones.
# Build-time tools from the prefix (protoc, grpc_cpp_plugin, pkg-config) run through
# wrappers that give them the prefix's libraries; nothing else sees LD_LIBRARY_PATH.
wrappers="$prefix/wrappers"
mkdir -p "$wrappers"
for tool in protoc grpc_cpp_plugin pkgconf; do
  [ -x "$prefix/usr/bin/$tool" ] || fail "$tool is not in .gpu-debs (fetch_debs.sh server)"
  cat > "$wrappers/$tool" <<EOF
#!/bin/sh
LD_LIBRARY_PATH="$lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$prefix/usr/bin/$tool" "\$@"
EOF
  chmod +x "$wrappers/$tool"
done
# pkg-config: only our .pc files, their /usr paths moved under the prefix.
cat > "$wrappers/pkg-config" <<EOF
#!/bin/sh
PKG_CONFIG_LIBDIR="$lib/pkgconfig:$prefix/usr/share/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$prefix" \\
  exec "$wrappers/pkgconf" "\$@"
EOF
chmod +x "$wrappers/pkg-config"

cuda_args=(-DLONGSANA_CUDA=AUTO)
if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
  cuda_args=(-DLONGSANA_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=${LONGSANA_CUDA_ARCHITECTURES:-90}")
fi
tests="${LONGSANA_BUILD_TESTS:-ON}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DLONGSANA_BUILD_SERVER=ON -DLONGSANA_BUILD_TESTS="$tests" -DLONGSANA_BUILD_BENCHMARKS="$tests" \
  -DLONGSANA_BUILD_SANITIZED=OFF -DLONGSANA_BUILD_TSAN=OFF "${cuda_args[@]}" \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$prefix/usr;$lib/cmake" \
  -DCMAKE_LIBRARY_PATH="$lib" -DCMAKE_INCLUDE_PATH="$prefix/usr/include" \
  -DProtobuf_PROTOC_EXECUTABLE="$wrappers/protoc" -DGRPC_CPP_PLUGIN="$wrappers/grpc_cpp_plugin" \
  -DPKG_CONFIG_EXECUTABLE="$wrappers/pkg-config" \
  -DCMAKE_BUILD_RPATH="$lib" \
  -DCMAKE_CXX_FLAGS="-idirafter $prefix/usr/include/x86_64-linux-gnu" \
  -DCMAKE_C_FLAGS="-idirafter $prefix/usr/include/x86_64-linux-gnu" \
  -DCMAKE_EXE_LINKER_FLAGS="-Wl,--disable-new-dtags -Wl,-rpath-link,$lib" \
  -DCMAKE_SHARED_LINKER_FLAGS="-Wl,--disable-new-dtags -Wl,-rpath-link,$lib" \
  ${LONGSANA_CMAKE_ARGS:-}
if [ $# -eq 0 ]; then
  cmake --build "$build_dir" -j "$jobs"
else
  cmake --build "$build_dir" -j "$jobs" --target "$@"
fi
echo "build_server: built in $build_dir (binaries in $build_dir/bin)"
