#!/usr/bin/env bash
# Installs the Debian 12 packages longsana-serve needs, idempotently.
#
#   scripts/deps.sh build   # what building and running the server needs
#   scripts/deps.sh test    # plus the test-only tools (clang/libFuzzer, ffprobe, chromium)
#
# Only packages that are not installed yet are fetched; when everything is present the
# script makes no network access and returns in well under a second.
set -euo pipefail

profile="${1:-build}"

build_pkgs=(
  build-essential cmake ninja-build pkg-config ca-certificates
  libtorch-dev libopenblas0-pthread
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libspdlog-dev libfmt-dev libabsl-dev nlohmann-json3-dev libsentencepiece-dev
  libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libx264-dev
  libboost-dev libyaml-cpp-dev libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  ffmpeg
)
test_pkgs=(
  clang libclang-rt-14-dev
  chromium
  prometheus python3-grpcio python3-protobuf openssl curl
  python3-numpy python3-torch python3-sentencepiece
)

pkgs=("${build_pkgs[@]}")
case "$profile" in
  build) ;;
  test) pkgs+=("${test_pkgs[@]}") ;;
  *) echo "usage: $0 [build|test]" >&2; exit 2 ;;
esac

if [ "$profile" = test ] && ! command -v npm >/dev/null 2>&1; then
  pkgs+=(nodejs npm)
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

# npm packages (test profile): the browser/WebSocket tests, the manifest tests (kustomize,
# kubernetes-models) and the Node client example, each
# pinned by its package-lock.json. `npm ci` runs only when node_modules is missing or older
# than the lock; Node.js and npm come with the machine (nodejs is added below if absent).
npm_dirs=(tests/js tests/deploy client/examples/node)
install_npm() {
  local root dir
  root="$(cd "$(dirname "$0")/.." && pwd)"
  for dir in "${npm_dirs[@]}"; do
    if [ ! -f "$root/$dir/node_modules/.package-lock.json" ] ||
       [ "$root/$dir/package-lock.json" -nt "$root/$dir/node_modules/.package-lock.json" ]; then
      echo "deps: npm ci in $dir"
      (cd "$root/$dir" && npm ci --no-audit --no-fund --loglevel=error)
    fi
  done
}

if [ ${#missing[@]} -eq 0 ]; then
  [ "$profile" = test ] && install_npm
  exit 0
fi

echo "deps: installing ${#missing[@]} missing package(s): ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
  else
    echo "deps: not root and no sudo; install these packages first: ${missing[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
[ "$profile" = test ] && install_npm
exit 0
