#!/usr/bin/env bash
# longsana-random-model writes a folder the loader accepts strictly (longsana-inspect) and the
# engine serves (longsana-bench-server runs sessions end to end through gRPC on it). Tiny
# configs here; scripts/gpu/check.sh uses the same tool at the real 2B size.
#   random_model_test.sh RANDOM_MODEL INSPECT BENCH_SERVER TESTDATA
set -euo pipefail
random_model=$1 inspect=$2 bench_server=$3 testdata=$4
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

"$random_model" --configs "$testdata/tiny-longsana" --out "$dir/model" --seed 3
"$inspect" "$dir/model"
# A second run into the same folder is refused rather than mixing two models.
if "$random_model" --configs "$testdata/tiny-longsana" --out "$dir/model" 2>"$dir/err"; then
  echo "FAIL: an existing folder was overwritten" >&2
  exit 1
fi
grep -q "exists" "$dir/err"
"$bench_server" --model_dir "$dir/model" --caption_len 24 --width 32 --height 32 --frames 41 \
  --repeats 1 --sessions 1,2 --threads 2 | tee "$dir/bench.txt"
grep -q "^SUMMARY | engine" "$dir/bench.txt"
echo "ok"
