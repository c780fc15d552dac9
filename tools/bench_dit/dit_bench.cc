// longsana-bench-dit: DiT forward time per block and per token, cache-pass time and state
// bytes per session.
//   (a) the tiny checkpoint (tests/testdata/tiny-longsana) on the chosen device;
//   (b) the real 2B config (random weights) at 832x480 with a 10-latent-frame block and
//       batch 1/2/4/8 — on CUDA when a device is present (on CPU only with --real_on_cpu).
// Prints a table; timings are medians over --iters runs after one warm-up. FLOPs are counted
// from the config (engine/models/longsana_dit/dit_flops.h: matmuls and convolutions); with
// --peak_tflops (the device's dense peak for the dtype, e.g. 989 for bf16 on an H100 SXM) the
// table also gives the model FLOP utilisation (MFU) of the forward.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "engine/models/longsana_dit/dit_flops.h"
#include "engine/models/longsana_dit/dit_model.h"
#include "engine/models/longsana_dit/dit_params.h"
#include "engine/models/model_directory.h"

ABSL_FLAG(std::string, tiny_model, LONGSANA_SOURCE_DIR "/tests/testdata/tiny-longsana",
          "tiny model directory");
ABSL_FLAG(std::string, real_config,
          LONGSANA_SOURCE_DIR "/tests/testdata/longsana-2b-configs/transformer/config.json",
          "config.json of the real 2B DiT");
ABSL_FLAG(std::string, device, "auto", "cpu, cuda or auto (cuda when available)");
ABSL_FLAG(int, iters, 3, "timed iterations per measurement");
ABSL_FLAG(int, threads, 0, "CPU intra-op threads (0: one per core)");
ABSL_FLAG(std::string, batches, "1,2,4,8", "batch sizes for the real config");
ABSL_FLAG(bool, real_on_cpu, false, "also run the real config on CPU (minutes per forward)");
ABSL_FLAG(double, peak_tflops, 0,
          "the device's dense peak TFLOP/s for the dtype, for the MFU column (0: no MFU)");

namespace {

using longsana::engine::DitConfig;
using longsana::engine::DitModel;
using longsana::engine::DitOptions;
using longsana::engine::DitSessionState;
using longsana::engine::DitWorkItem;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Measurement {
  double forward_ms = 0, cache_ms = 0;
};

Measurement Measure(const DitModel& model, int batch, int64_t frames, int64_t lh, int64_t lw,
                    int64_t caption_len, int iters) {
  const DitConfig& c = model.config();
  const auto device = model.options().device;
  std::vector<std::unique_ptr<DitSessionState>> states;
  std::vector<DitWorkItem> items(batch);
  at::Generator gen = at::detail::createCPUGenerator(1);
  for (int i = 0; i < batch; ++i) {
    states.push_back(model.NewState(model.StateSpec(lh, lw, -1)));
    items[i].latent = at::randn({c.in_channels, frames, lh, lw}, gen).to(device);
    items[i].caption = at::randn({caption_len, c.caption_channels}, gen).to(device);
    items[i].caption_mask = at::ones({caption_len}, at::kLong).to(device);
    items[i].timestep = 1000;
    items[i].frame_offset = 10 * i;
    items[i].state = states[i].get();
  }
  auto time_once = [&](bool cache) {
    for (auto& it : items) {
      it.commit_state = cache;
      it.timestep = cache ? 0 : 1000;
    }
    const auto t0 = std::chrono::steady_clock::now();
    at::Tensor v = model.Forward(items);
    (void)v.sum().item<float>();  // waits for the device
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  time_once(false);  // warm-up (allocator, kernels)
  std::vector<double> fwd, cache;
  for (int i = 0; i < iters; ++i) fwd.push_back(time_once(false));
  for (int i = 0; i < iters; ++i) cache.push_back(time_once(true));
  return {Median(fwd), Median(cache)};
}

void PrintRow(const char* name, const DitModel& model, int batch, int64_t frames, int64_t lh,
              int64_t lw, int64_t caption_len, const Measurement& m) {
  const auto& p = model.config().patch_size;
  const int64_t tokens = frames * (lh / p[1]) * (lw / p[2]);
  const double block_ms = 4 * m.forward_ms + m.cache_ms;  // 4 denoise steps + cache pass
  const double video_frames = batch * 4.0 * frames;        // 4 video frames per latent frame
  const double flops =
      batch *
      longsana::engine::CountDitForwardFlops(model.config(), frames, lh, lw, caption_len).total();
  const double tflops_per_s = flops / (m.forward_ms / 1000.0) / 1e12;
  const double peak = absl::GetFlag(FLAGS_peak_tflops);
  char mfu[16] = "-";  // the table's column
  if (peak > 0) std::snprintf(mfu, sizeof mfu, "%.1f", 100.0 * tflops_per_s / peak);
  char mfu_cell[24] = "-";  // the summary's, with its unit
  if (peak > 0) std::snprintf(mfu_cell, sizeof mfu_cell, "%.1f%%", 100.0 * tflops_per_s / peak);
  std::printf(
      "%-6s %5lldx%-5lld %6lld %5d %8lld %12.2f %10.3f %12.2f %12.1f %10.1f %14lld %11.1f "
      "%9.2f %6s\n",
      name, static_cast<long long>(lw * 8), static_cast<long long>(lh * 8),
      static_cast<long long>(frames), batch, static_cast<long long>(tokens), m.forward_ms,
      1000.0 * m.forward_ms / (tokens * batch), m.cache_ms, block_ms,
      video_frames / (block_ms / 1000.0),
      static_cast<long long>(model.StateSpec(lh, lw, -1).bytes()), flops / 1e9, tflops_per_s, mfu);
  // One line per real-model row for scripts/gpu/check.sh's summary table.
  if (std::string(name) == "tiny") return;
  std::printf(
      "SUMMARY | DiT %s %lldx%lld, %lld latent frames, batch %d | %.1f ms/forward | "
      "%.1f fps (DiT only) | %.1f TFLOP/s of %.2f TFLOP counted | MFU %s |\n",
      name, static_cast<long long>(lw * 8), static_cast<long long>(lh * 8),
      static_cast<long long>(frames), batch, m.forward_ms, video_frames / (block_ms / 1000.0),
      tflops_per_s, flops / 1e12, mfu_cell);
}

std::vector<int> ParseBatches(const std::string& s) {
  std::vector<int> out;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t end = s.find(',', pos);
    if (end == std::string::npos) end = s.size();
    out.push_back(std::stoi(s.substr(pos, end - pos)));
    pos = end + 1;
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  if (absl::GetFlag(FLAGS_threads) > 0) at::set_num_threads(absl::GetFlag(FLAGS_threads));
  std::string device_name = absl::GetFlag(FLAGS_device);
  if (device_name == "auto") device_name = at::hasCUDA() ? "cuda" : "cpu";
  const at::Device device(device_name);
  DitOptions options;
  options.device = device;
  options.dtype = device.is_cuda() ? at::kBFloat16 : at::kFloat;
  const int iters = absl::GetFlag(FLAGS_iters);

  std::printf("LongSANA DiT benchmark: device=%s dtype=%s threads=%d LibTorch %s\n",
              device_name.c_str(), options.dtype == at::kFloat ? "fp32" : "bf16",
              at::get_num_threads(), TORCH_VERSION);
  std::printf("block = 4 denoise forwards + 1 cache pass; fps = video frames per second of DiT "
              "time (4 video frames per latent frame)\n\n");
  std::printf("%-6s %11s %6s %5s %8s %12s %10s %12s %12s %10s %14s %11s %9s %6s\n", "model",
              "resolution", "frames", "batch", "tokens", "forward ms", "us/token", "cache ms",
              "block ms", "fps", "state B/sess", "GFLOP/fwd", "TFLOP/s", "MFU %");

  auto dir = longsana::engine::ModelDirectory::Open(absl::GetFlag(FLAGS_tiny_model));
  if (!dir.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(dir.status().message()).c_str());
    return 1;
  }
  auto tiny = DitModel::Load(*dir, options);
  if (!tiny.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(tiny.status().message()).c_str());
    return 1;
  }
  for (auto [lh, lw] : {std::pair<int64_t, int64_t>{8, 12}, {60, 104}}) {
    for (int batch : {1, 4}) {
      PrintRow("tiny", **tiny, batch, 10, lh, lw, 24,
               Measure(**tiny, batch, 10, lh, lw, 24, iters));
    }
  }

  auto config = DitConfig::FromFile(absl::GetFlag(FLAGS_real_config));
  if (!config.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  // "2B" for the real configuration, "config" for another one given by --real_config.
  const char* real_name =
      config->num_layers == 20 && config->num_attention_heads * config->attention_head_dim == 2240
          ? "2B"
          : "config";
  const double real_flops =
      longsana::engine::CountDitForwardFlops(*config, 10, 60, 104, 300).total();
  std::printf(
      "\n%s at 832x480, 10 latent frames, caption 300: %.2f TFLOP per forward, %.2f "
      "TFLOP per block (4 steps + cache pass, 40 video frames)\n",
      real_name, real_flops / 1e12, 5 * real_flops / 1e12);
  if (absl::GetFlag(FLAGS_peak_tflops) > 0) {
    std::printf("At %.0f TFLOP/s the DiT alone could make at most %.1f video frames/s\n",
                absl::GetFlag(FLAGS_peak_tflops),
                40.0 / (5 * real_flops / (absl::GetFlag(FLAGS_peak_tflops) * 1e12)));
  }
  if (!device.is_cuda() && !absl::GetFlag(FLAGS_real_on_cpu)) {
    const auto spec = longsana::engine::DitStateSpec::For(*config, 60, 104, -1, at::kBFloat16);
    std::printf(
        "2B     (832x480, 10 frames, batch 1/2/4/8): skipped, no CUDA device "
        "(--real_on_cpu to force). State per session (bf16 conv cache): %lld bytes\n",
        static_cast<long long>(spec.bytes()));
    return 0;
  }
  longsana::engine::WeightLoadOptions load;
  load.device = device;
  load.dtype = options.dtype;
  auto weights = longsana::engine::Weights::Random(longsana::engine::DitParamSpecs(*config), load);
  auto real = DitModel::Create(*config, weights, options);
  if (!real.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(real.status().message()).c_str());
    return 1;
  }
  for (int batch : ParseBatches(absl::GetFlag(FLAGS_batches))) {
    PrintRow(real_name, **real, batch, 10, 60, 104, 300,
             Measure(**real, batch, 10, 60, 104, 300, iters));
  }
  return 0;
}
