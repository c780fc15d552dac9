# Sourced on the GPU machine: makes the unpacked Debian libraries and LibTorch's own
# libraries visible to binaries built by build_engine.sh.
_longsana_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
_torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$_longsana_root/.gpu-prefix/usr/lib/x86_64-linux-gnu:$_torch_lib:${LD_LIBRARY_PATH:-}"
export PKG_CONFIG_PATH="$_longsana_root/.gpu-prefix/usr/lib/x86_64-linux-gnu/pkgconfig:${PKG_CONFIG_PATH:-}"
unset _longsana_root _torch_lib
