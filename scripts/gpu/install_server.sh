#!/usr/bin/env bash
# Installs what build_server.sh built into DEST for a runtime image or another machine:
# DEST/bin (longsana-server, longsana) and DEST/lib (every library they load from
# .gpu-prefix or from LibTorch, copied). Run the binaries with LD_LIBRARY_PATH=DEST/lib (the
# Dockerfile's `cuda` stage sets it).
#   scripts/gpu/install_server.sh DEST [TORCH_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
dest="${1:?usage: $0 DEST [TORCH_DIR]}"
torch="${2:-}"
build_dir="${LONGSANA_BUILD_DIR:-build-gpu}"
prefix="$PWD/.gpu-prefix"
mkdir -p "$dest/bin" "$dest/lib"
install -m 0755 -s "$build_dir/bin/longsana-server" "$build_dir/bin/longsana" "$dest/bin/"
ldd "$dest/bin/longsana-server" "$dest/bin/longsana" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' |
  sort -u | while read -r lib; do
    case "$lib" in
      "$prefix"/* | "${torch:-/nonexistent}"/*) cp -L "$lib" "$dest/lib/" ;;
    esac
  done
# SentencePiece is dlopen'ed (engine/text), not linked: by its name from DEST/lib.
cp -L "$prefix"/usr/lib/x86_64-linux-gnu/libsentencepiece.so.0 "$dest/lib/"
echo "install_server: $(ls "$dest/lib" | wc -l) libraries, $(du -sh "$dest" | cut -f1) in $dest"
