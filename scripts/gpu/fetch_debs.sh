#!/usr/bin/env bash
# Run HERE (Debian 12 with network): downloads into .gpu-debs/ (git-ignored) the Debian 12
# .deb files a GPU machine needs to build longsana-serve without any of our Debian -dev
# packages: that machine has CUDA, CMake, ninja, a C++ compiler and LibTorch 2.x (PyTorch's
# or an official LibTorch distribution) but no network. build_server.sh (or
# build_engine.sh) unpacks them there, into .gpu-prefix/, never into /.
#
#   scripts/gpu/fetch_debs.sh server   # the whole server: + gRPC, protobuf, FFmpeg, Boost, ...
#   scripts/gpu/fetch_debs.sh engine   # the engine, its tests and benchmarks only (default)
#
# With every package come the libraries it needs at run time (the Depends closure), except
# the base system every glibc machine has (libc6, libstdc++6, libgcc-s1, ...) and what
# LibTorch and CUDA bring themselves. build_server.sh checks that the machine's glibc is at
# least what these libraries need (Debian 12: 2.36).
set -euo pipefail
cd "$(dirname "$0")/../.."

profile="${1:-engine}"
engine_pkgs=(
  nlohmann-json3-dev libabsl-dev libfmt-dev libspdlog-dev libsentencepiece-dev
  libgtest-dev libgmock-dev libbenchmark-dev
)
server_pkgs=(
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev
  libboost-dev libyaml-cpp-dev libssl-dev
  pkgconf  # the GPU machine may have no pkg-config (FFmpeg is found through it)
)
case "$profile" in
  engine) pkgs=("${engine_pkgs[@]}") ;;
  server) pkgs=("${engine_pkgs[@]}" "${server_pkgs[@]}") ;;
  *) echo "usage: $0 [engine|server]" >&2; exit 2 ;;
esac

# What must come from the machine, never from us: glibc and the compiler's runtime (tied to
# the machine's toolchain), the toolchain itself, LibTorch's and CUDA's libraries; and what is
# no library (interpreters, package tools). Every other library comes along, and the built
# binaries find them through their RPATH (build_server.sh), not through LD_LIBRARY_PATH, so
# the machine's own programs never see them.
exclude_re='^(libc6|libc6-dev|libc-dev-bin|libgcc-s1|libstdc\+\+6|libstdc\+\+-[0-9]+-dev|gcc-[0-9]+-base|libgcc-[0-9]+-dev|linux-libc-dev|libcrypt1|libcrypt-dev|libnsl-dev|libnsl2|libtirpc-dev|rpcsvc-proto|libgomp1|libatomic1|libitm1|libasan[0-9]*|liblsan0|libtsan[0-9]*|libubsan1|libquadmath0|libcc1-0|gcc(-[0-9]+)?|g\+\+(-[0-9]+)?|cpp(-[0-9]+)?|binutils.*|libbinutils|libctf.*|libgprofng0|libisl23|libmpc3|libmpfr6|libjansson4|debconf|dpkg|perl|perl-base|perl-modules-.*|libperl.*|python3.*|libpython3.*|mime-support|media-types|tzdata|readline-common|sensible-utils|init-system-helpers|lsb-base|sysvinit-utils|adduser|passwd|coreutils|bash|dash|debianutils|base-files|base-passwd|login|mount|util-linux|libtorch.*|nvidia-.*|libcuda.*|libcudnn.*|libnccl.*|libcublas.*|ca-certificates)$'

mapfile -t closure < <(
  apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
    --no-replaces --no-enhances "${pkgs[@]}" |
    awk '/^[a-z0-9]/ { print $1 }' | sort -u | grep -Ev "$exclude_re" || true
)
# Virtual packages have no .deb: keep what apt can download.
mapfile -t real < <(apt-cache show --no-all-versions "${closure[@]}" 2>/dev/null |
                    awk '/^Package: / { print $2 }' | sort -u)
rm -rf .gpu-debs
mkdir -p .gpu-debs
cd .gpu-debs
# (as root apt would warn that its _apt user cannot write here)
apt-get -o APT::Sandbox::User="$(id -un)" download "${real[@]}" > /dev/null
printf '%s\n' "${pkgs[@]}" > PROFILE
echo "fetch_debs ($profile): ${#real[@]} packages, $(du -sh . | cut -f1) in .gpu-debs/"
