#!/usr/bin/env bash
# Prints the Debian packages that hold the shared libraries the given binaries load (ldd),
# one per line, sorted: what a runtime image must install for them, and nothing else. A
# library argument (one the program dlopens, such as SentencePiece) adds its own package too.
#   scripts/runtime_packages.sh build/bin/longsana-server build/bin/longsana \
#     /usr/lib/x86_64-linux-gnu/libsentencepiece.so.0
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
missing=$(ldd "$@" | awk '/not found/ {print $1}' | sort -u)
if [ -n "$missing" ]; then
  echo "runtime_packages: libraries not found: $missing" >&2
  exit 1
fi
{ ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// {print $3}'; printf '%s\n' "$@" | grep '\.so'; } |
  sort -u | while read -r lib; do
  # A path through the alternatives system or a usrmerge link: ask for what it points at.
  for path in "$lib" "$(realpath "$lib")"; do
    if owner=$(dpkg -S "$path" 2>/dev/null); then
      echo "${owner%%:*}"
      break
    fi
    # usrmerge: dpkg knows /lib/... files by their /usr-less or /usr path.
    alt="${path#/usr}"
    [ "$alt" = "$path" ] && alt="/usr$path"
    if owner=$(dpkg -S "$alt" 2>/dev/null); then
      echo "${owner%%:*}"
      break
    fi
  done
done | sort -u
