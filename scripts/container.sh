#!/usr/bin/env bash
# Container checks, without a container daemon or a registry: a Debian 12 base image made
# here (debootstrap --variant=minbase, imported into buildah's store), then
#
#   scripts/container.sh cpu        # the Dockerfile's `cpu` image: `buildah bud --isolation
#                                   # chroot` with cached layers; the server started in a
#                                   # container of it, `longsana generate` against it, the MP4
#                                   # checked with ffprobe, SIGTERM. Prints image sizes, build
#                                   # times, the time from start to ready.
#   scripts/container.sh cpu-build  # the same image, built only
#   scripts/container.sh gpu-build  # scripts/gpu/build_server.sh in a Debian 12 container that
#                                   # has a compiler, CMake and LibTorch but none of our
#                                   # packages (tests/container/Containerfile.gpu-standin):
#                                   # the whole server builds from .gpu-debs alone and serves
#
# CTest's container_cpu_image_test and container_gpu_build_test run the first and the last.
# Needs root (buildah's chroot isolation, debootstrap) and Debian's buildah, debootstrap and
# ffmpeg (installed when missing). Network: Debian's archive only. State: build-container/
# (the base rootfs tarball, logs) and buildah's store (/var/lib/containers).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
mode="${1:-cpu}"
case "$mode" in cpu | cpu-build | gpu-build) ;;
  *) echo "usage: $0 [cpu|cpu-build|gpu-build]" >&2; exit 2 ;;
esac

# $LONGSANA_CONTAINER_ROOT: a storage folder of its own (an empty one measures a cold build).
B=(buildah)
if [ -n "${LONGSANA_CONTAINER_ROOT:-}" ]; then
  B+=(--root "$LONGSANA_CONTAINER_ROOT/storage" --runroot "$LONGSANA_CONTAINER_ROOT/run")
fi
base_image=localhost/longsana-debian:bookworm
image=localhost/longsana-serve:cpu
state="$root/build-container"
mkdir -p "$state"

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    exec sudo -n --preserve-env=LONGSANA_JOBS,LONGSANA_CONTAINER_ROOT "$0" "$@"
  fi
  echo "container.sh: needs root (buildah --isolation chroot, debootstrap), or sudo" >&2
  exit 2
fi
need=()
command -v buildah >/dev/null || need+=(buildah)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v ffprobe >/dev/null || need+=(ffmpeg)
if [ ${#need[@]} -gt 0 ]; then
  echo "container.sh: installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
size_mb() { "${B[@]}" images --format '{{.Size}}' "$1" 2>/dev/null | head -1; }

# 1. The base image: Debian 12 minbase, made once.
if ! "${B[@]}" inspect --type image "$base_image" >/dev/null 2>&1; then
  t=$(now)
  if [ ! -f "$state/bookworm-minbase.tar" ]; then
    rm -rf "$state/rootfs"
    debootstrap --variant=minbase bookworm "$state/rootfs" http://deb.debian.org/debian \
      > "$state/debootstrap.log" 2>&1 || { tail -20 "$state/debootstrap.log" >&2; exit 1; }
    tar -C "$state/rootfs" -cf "$state/bookworm-minbase.tar" .
    rm -rf "$state/rootfs"
  fi
  ctr=$("${B[@]}" from scratch)
  "${B[@]}" add --quiet "$ctr" "$state/bookworm-minbase.tar" / >/dev/null
  "${B[@]}" config --env LANG=C.UTF-8 --cmd /bin/bash "$ctr"
  "${B[@]}" commit --quiet "$ctr" "$base_image" >/dev/null
  "${B[@]}" rm "$ctr" >/dev/null
  echo "base image $base_image: $(size_mb "$base_image"), made in $(elapsed "$t") s"
fi

# `buildah bud` with cached layers (--layers); the log in build-container/bud-NAME.log.
bud() {
  local name="$1"
  shift
  "${B[@]}" bud --isolation chroot --format docker --layers --quiet \
    --build-arg JOBS="${LONGSANA_JOBS:-2}" "$@" > "$state/bud-$name.log" 2>&1 ||
    { tail -40 "$state/bud-$name.log" >&2; echo "container.sh: buildah bud ($name) failed" >&2; exit 1; }
}

if [ "$mode" = gpu-build ]; then
  # The .debs the GPU machine would get, fetched here (Debian 12 with network).
  t=$(now)
  scripts/gpu/fetch_debs.sh server
  bud gpu-standin --build-arg BASE_IMAGE="$base_image" -t localhost/longsana-gpu-standin \
    -f tests/container/Containerfile.gpu-standin tests/container
  echo "stand-in image: $(size_mb localhost/longsana-gpu-standin), ready in $(elapsed "$t") s"
  ctr=$("${B[@]}" from --quiet localhost/longsana-gpu-standin)
  trap '"${B[@]}" rm "$ctr" >/dev/null 2>&1 || true' EXIT
  # The checkout as a GPU machine gets it: sources and .gpu-debs, nothing built here.
  "${B[@]}" copy --quiet --contextdir "$root" --ignorefile "$root/.dockerignore" "$ctr" "$root" /src >/dev/null
  "${B[@]}" copy --quiet "$ctr" "$root/.gpu-debs" /src/.gpu-debs >/dev/null
  t=$(now)
  "${B[@]}" run --isolation chroot "$ctr" -- env LONGSANA_TORCH_PREFIX=/opt/libtorch/usr \
    LONGSANA_BUILD_TESTS=OFF LONGSANA_JOBS="${LONGSANA_JOBS:-2}" \
    /src/scripts/gpu/build_server.sh longsana-server longsana > "$state/gpu-build.log" 2>&1 ||
    { tail -40 "$state/gpu-build.log" >&2; echo "container.sh: build_server.sh failed in the stand-in" >&2; exit 1; }
  echo "scripts/gpu/build_server.sh in the package-free container: built in $(elapsed "$t") s"
  # It runs, with no LD_LIBRARY_PATH: serve the tiny model, generate, SIGTERM.
  "${B[@]}" run --isolation chroot "$ctr" -- bash -c '
    set -euo pipefail
    cd /src/build-gpu/bin
    if ldd ./longsana-server ./longsana | grep "not found"; then exit 1; fi
    ./longsana-server --model_dir=/src/tests/testdata/tiny-longsana --check_config
    ./longsana-server --model_dir=/src/tests/testdata/tiny-longsana --listen=127.0.0.1:0 \
      --http_listen= --threads=2 > /tmp/server.out 2> /tmp/server.log &
    pid=$!
    for _ in $(seq 1 300); do grep -q "^listening on" /tmp/server.out && break; sleep 0.2; done
    address=$(sed -n "s/^listening on //p" /tmp/server.out)
    for _ in $(seq 1 300); do ./longsana health --server="$address" >/dev/null 2>&1 && break; sleep 0.5; done
    ./longsana generate "a kite over a hill" -o /tmp/out.mp4 --server="$address" \
      --width=64 --height=64 --frames=81 --timeout=120
    test -s /tmp/out.mp4
    kill -TERM $pid
    wait $pid
    echo "the server built by scripts/gpu/build_server.sh served a video and exited 0"
  ' 2>&1 | tail -4
  echo "container check (gpu-build) passed"
  exit 0
fi

# 2. The image (and its build stage, tagged too for its size).
t=$(now)
bud cpu-build --build-arg DEBIAN_IMAGE="$base_image" --target cpu-build \
  -t localhost/longsana-serve:cpu-build -f Dockerfile .
bud cpu --build-arg DEBIAN_IMAGE="$base_image" --target cpu -t "$image" -f Dockerfile .
build_seconds=$(elapsed "$t")
echo "image $image: $(size_mb "$image") (build stage $(size_mb localhost/longsana-serve:cpu-build)), built in ${build_seconds} s"
[ "$mode" = cpu-build ] && exit 0

# 3. Run it: the server in a container (chroot isolation shares this host's network), the
# CLI of this checkout (or the image's) against it.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
http_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ctr=$("${B[@]}" from --quiet "$image")
cleanup() {
  [ -n "${server_pid:-}" ] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  "${B[@]}" rm "$ctr" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cli() { "${B[@]}" run --isolation chroot --user 10001:10001 "$ctr" -- longsana "$@"; }

t=$(now)
"${B[@]}" run --isolation chroot --user 10001:10001 "$ctr" -- longsana-server \
  --model_dir=/opt/longsana/model --device=cpu --threads=2 \
  --listen="127.0.0.1:$port" --http_listen="127.0.0.1:$http_port" \
  > "$state/server.out" 2> "$state/server.log" &
server_pid=$!
ready=""
for _ in $(seq 1 600); do
  if cli health --server="127.0.0.1:$port" --timeout=1 >/dev/null 2>&1; then ready=1; break; fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.2
done
if [ -z "$ready" ]; then
  tail -30 "$state/server.log" >&2
  echo "container.sh: the server in the container never became ready" >&2
  exit 1
fi
echo "container start to ready: $(elapsed "$t") s"

out="$state/container.mp4"
rm -f "$out"
cli generate "a lighthouse on a cliff at dusk" --output=- --server="127.0.0.1:$port" \
  --width=64 --height=64 --frames=81 --seed=5 --timeout=120 > "$out"
frames=$(ffprobe -v error -select_streams v:0 -count_frames -show_entries stream=nb_read_frames,width,height \
  -of csv=p=0 "$out")
echo "generated $out through the container: width,height,frames = $frames"
[ "$frames" = "64,64,81" ] || { echo "container.sh: unexpected video: $frames" >&2; exit 1; }
curl -fsS "http://127.0.0.1:$http_port/readyz" >/dev/null
# SIGTERM to the server itself: buildah run does not forward it (it kills its child). With
# chroot isolation the server is a process of this host, found by its unique --listen.
pid=$(pgrep -f -- "^(/opt/longsana/bin/)?longsana-server .*--listen=127.0.0.1:$port" | head -1)
[ -n "$pid" ] || { echo "container.sh: the server's process is gone" >&2; exit 1; }
kill -TERM "$pid"
code=0
wait "$server_pid" || code=$?
server_pid=""
grep -q 'received SIGTERM' "$state/server.log" || { echo "container.sh: no drain logged" >&2; exit 1; }
echo "server in the container exited $code after SIGTERM"
[ "$code" -eq 0 ] || exit 1
echo "container check (cpu) passed"
