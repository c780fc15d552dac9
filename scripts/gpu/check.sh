#!/usr/bin/env bash
# One command on a GPU machine that says where the GPU path stands (issue 15):
#   1. builds the whole server with CUDA (scripts/gpu/build_server.sh; needs .gpu-debs/ from
#      `scripts/gpu/fetch_debs.sh server`), only the targets this check runs;
#   2. runs `ctest -L gpu`: parity on CUDA for every component in fp32 (TF32 off) and bf16,
#      the step loop under CUDA's sync detector, the engine end to end on the tiny model
#      with batch invariance (tests/gpu/gpu_test.cc, the CUDA cases of gemma2_test);
#   3. benchmarks at the real 2B size with random weights, 832x480: the DiT forward at batch
#      1/2/4/8 with achieved TFLOP/s and MFU against the counted FLOPs, the VAE decode per
#      latent frame (bf16 and fp32), the Gemma-2 encode, and the engine through gRPC with
#      1/2/4/8 sessions on a random-weight 2B model folder (aggregate fps, time to first
#      chunk, how many kept real time);
#   4. prints one Markdown table of every result (also in $out/summary.md), ready for the
#      README, with the GPU's name and each phase's time.
# Every phase runs even if an earlier one failed; the exit status is 1 if anything failed.
#
#   scripts/gpu/check.sh                  # on the GPU machine, from a clean checkout
#   LONGSANA_CHECK_SKIP_BUILD=1 scripts/gpu/check.sh   # again, on the existing build
#   LONGSANA_CHECK_SELFTEST=1 scripts/gpu/check.sh     # here, on CPU: the same commands at
#       tiny sizes against build/ (what tests/tools/gpu_check_selftest runs in CI)
#
# Output: $LONGSANA_CHECK_OUT (default build-gpu/check): check.log, one log per phase,
# summary.md. Target: under 8 minutes on a 16-core H100/H200 machine.
set -uo pipefail
cd "$(dirname "$0")/../.."
root="$PWD"
selftest="${LONGSANA_CHECK_SELFTEST:-0}"
if [ "$selftest" = 1 ]; then
  build="${LONGSANA_BUILD_DIR:-build}"
  out="${LONGSANA_CHECK_OUT:-$build/gpu-check-selftest}"
else
  build="${LONGSANA_BUILD_DIR:-build-gpu}"
  out="${LONGSANA_CHECK_OUT:-$build/check}"
fi
rm -rf "$out"
mkdir -p "$out"
bin="$build/bin"
failed=()
phases=()
t_all=$(date +%s)

say() { echo "check: $*" | tee -a "$out/check.log"; }
# run NAME CMD...: runs one phase with its output in $out/NAME.log, records its time and status.
run() {
  local name=$1
  shift
  local t0 rc
  t0=$(date +%s)
  say "$name: $*"
  "$@" >"$out/$name.log" 2>&1
  rc=$?
  phases+=("| phase $name | $(($(date +%s) - t0)) s | $([ $rc = 0 ] && echo ok || echo "FAILED (exit $rc)") |")
  if [ $rc != 0 ]; then
    failed+=("$name")
    say "$name FAILED (exit $rc); last lines of $out/$name.log:"
    tail -n 30 "$out/$name.log" | tee -a "$out/check.log"
  fi
  return 0
}

# 0. The device and its dense peaks (TFLOP/s) for the MFU columns: bf16 tensor cores, fp32
# without TF32. Unknown GPUs get 0 (no MFU column).
if [ "$selftest" = 1 ]; then
  device=cpu
  gpu="CPU self-test ($(nproc) cores; no GPU)"
  peak_bf16=0
  peak_fp32=0
else
  device=cuda
  if ! command -v nvidia-smi >/dev/null || ! nvidia-smi >/dev/null 2>&1; then
    echo "check: no NVIDIA GPU here (nvidia-smi fails); LONGSANA_CHECK_SELFTEST=1 runs the CPU self-test" >&2
    exit 2
  fi
  gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)
  case "$gpu" in
    *H100*PCIe*) peak_bf16=756 peak_fp32=51 ;;
    *H100* | *H200* | *H800* | *GH200*) peak_bf16=989 peak_fp32=67 ;;
    *A100*) peak_bf16=312 peak_fp32=19.5 ;;
    *L40S*) peak_bf16=362 peak_fp32=91.6 ;;
    *) peak_bf16=0 peak_fp32=0 ;;
  esac
fi
say "device: $gpu; peaks used for MFU: bf16 $peak_bf16, fp32 $peak_fp32 TFLOP/s (0: unknown)"

# 1. Build.
targets=(gpu_test gemma2_test longsana-bench-dit longsana-bench-vae longsana-bench-text
  longsana-bench-server longsana-random-model longsana-inspect)
if [ "$selftest" = 1 ] || [ "${LONGSANA_CHECK_SKIP_BUILD:-0}" = 1 ]; then
  say "build: skipped (using $build)"
else
  run build scripts/gpu/build_server.sh "${targets[@]}"
fi
for t in "${targets[@]}"; do
  case "$t" in *_test) continue ;; esac
  [ -x "$bin/$t" ] || { say "missing $bin/$t: nothing to measure with"; failed+=("build"); }
done

# 2. The GPU tests. The self-test (run by ctest itself) runs the suite's binary directly,
# where every case skips, rather than a ctest inside ctest.
if [ "$selftest" = 1 ]; then
  run gpu_tests "$bin/gpu_test"
else
  run gpu_tests ctest --test-dir "$build" -L gpu --output-on-failure
fi

# 3. Benchmarks. The self-test runs the same binaries and flags at tiny sizes on CPU.
configs="$root/tests/testdata/longsana-2b-configs"
tiny="$root/tests/testdata/tiny-longsana"
if [ "$selftest" = 1 ]; then
  dit_args=(--device=cpu --real_config="$tiny/transformer/config.json" --real_on_cpu
    --batches=1,2 --iters=1)
  vae_args=(--device cpu --config "$tiny/vae/config.json" --width 64 --height 64 --frames 2)
  vae_pass=(1)
  text_args=(--device cpu --config "$tiny/text_encoder/config.json" --caption_len 24 --iters 1)
  model_configs="$tiny"
  server_args=(--device=cpu --caption_len=24 --width=32 --height=32 --frames=41 --repeats=1
    --sessions=1,2)
else
  dit_args=(--device=cuda --iters=3)
  vae_args=(--device cuda --width 832 --height 480 --frames 10)
  vae_pass=(1,2,4)
  text_args=(--device cuda --iters 5)
  model_configs="$configs"
  server_args=(--device=cuda --caption_len=300 --width=832 --height=480 --frames=161 --repeats=1
    --sessions=1,2,4,8)
fi
run bench_dit "$bin/longsana-bench-dit" "${dit_args[@]}" --peak_tflops="$peak_bf16"
run bench_vae_bf16 "$bin/longsana-bench-vae" "${vae_args[@]}" --dtype bf16 \
  --pass-frames "${vae_pass[0]}" --peak-tflops "$peak_bf16"
run bench_vae_fp32 "$bin/longsana-bench-vae" "${vae_args[@]}" --dtype fp32 --pass-frames 1 \
  --peak-tflops "$peak_fp32"
run bench_text "$bin/longsana-bench-text" "${text_args[@]}"
run random_model "$bin/longsana-random-model" --configs="$model_configs" --out="$out/model"
for vae in bf16 fp32; do
  run "bench_engine_vae_$vae" "$bin/longsana-bench-server" --model_dir="$out/model" \
    "${server_args[@]}" --vae_dtype="$vae"
done
rm -rf "$out/model"  # ~10 GB at the real size

# 4. One table.
{
  echo "**GPU check** (\`scripts/gpu/check.sh\`, $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')): $gpu"
  echo
  echo "| measurement | result | | | |"
  echo "|---|---|---|---|---|"
  for log in "$out"/bench_*.log; do
    [ -f "$log" ] && grep -h '^SUMMARY ' "$log" | sed 's/^SUMMARY //'
  done
  echo
  echo "| phase | time | status |"
  echo "|---|---|---|"
  if [ ${#phases[@]} -gt 0 ]; then printf '%s\n' "${phases[@]}"; fi
  echo "| total | $(($(date +%s) - t_all)) s | $([ ${#failed[@]} = 0 ] && echo ok || echo "FAILED: ${failed[*]}") |"
} >"$out/summary.md"
cat "$out/summary.md" | tee -a "$out/check.log"
[ ${#failed[@]} = 0 ]
