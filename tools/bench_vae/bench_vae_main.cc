// longsana-bench-vae: Wan VAE decode time per latent frame and decoder-cache bytes per
// session, for a VAE config (default: the real Wan2.1 config) at a video resolution
// (default 832x480), with random weights allocated from the parameter table (no checkpoint
// needed; timings do not depend on the values).
//
// Each run decodes latent frame 0 (1 video frame) and then `--frames` further latent frames
// (4 video frames each, the steady state of a stream; default 1 on CPU, 10 on CUDA) with one
// cache, for each `--pass-frames` value (VaeOptions::max_frames_per_pass; default 1 on CPU,
// 1,2,4 on CUDA). --device auto (the default) runs CPU, plus CUDA when a GPU is present.
//
// FLOPs per latent frame are counted from the config (engine/models/wan_vae/wan_vae_flops.h);
// with --peak-tflops (the device's dense peak for the dtype) the table gives the MFU. On CUDA
// TF32 stays off (the reference numerics) unless --tf32.
//
//   longsana-bench-vae [--config PATH] [--width 832] [--height 480] [--frames N]
//                      [--device auto|cpu|cuda] [--dtype fp32|bf16] [--pass-frames K,...]
//                      [--threads N] [--peak-tflops T] [--tf32]
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/loader/param_spec.h"
#include "engine/models/wan_vae/wan_vae_decoder.h"
#include "engine/models/wan_vae/wan_vae_flops.h"
#include "engine/models/wan_vae/wan_vae_params.h"
#include "fmt/format.h"

namespace longsana::engine {
namespace {

using Clock = std::chrono::steady_clock;

struct BenchArgs {
  std::string config =
      std::string(LONGSANA_SOURCE_DIR) + "/tests/testdata/longsana-2b-configs/vae/config.json";
  int64_t width = 832;
  int64_t height = 480;
  int64_t frames = -1;  // steady-state latent frames; default 1 on CPU, 10 on CUDA
  std::string device = "auto";
  std::string dtype = "fp32";
  std::vector<int64_t> pass_frames;  // default: 1 on CPU, 1,2,4 on CUDA
  int threads = 2;
  double peak_tflops = 0;  // for the MFU column; 0: none
  bool tf32 = false;
};

bool ParseArgs(int argc, char** argv, BenchArgs* args) try {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--config") {
      args->config = value();
    } else if (a == "--width") {
      args->width = std::stoll(value());
    } else if (a == "--height") {
      args->height = std::stoll(value());
    } else if (a == "--frames") {
      args->frames = std::stoll(value());
    } else if (a == "--device") {
      args->device = value();
    } else if (a == "--dtype") {
      args->dtype = value();
    } else if (a == "--threads") {
      args->threads = std::stoi(value());
    } else if (a == "--peak-tflops") {
      args->peak_tflops = std::stod(value());
    } else if (a == "--tf32") {
      args->tf32 = true;
    } else if (a == "--pass-frames") {
      args->pass_frames.clear();
      std::stringstream list(value());
      for (std::string item; std::getline(list, item, ',');) {
        args->pass_frames.push_back(std::stoll(item));
      }
    } else {
      return false;
    }
  }
  for (int64_t k : args->pass_frames) {
    if (k < 1) return false;
  }
  if (args->dtype != "fp32" && args->dtype != "bf16") return false;
  if (args->threads < 1) return false;
  return args->width > 0 && args->height > 0 && args->width % 8 == 0 && args->height % 8 == 0;
} catch (const std::exception&) {  // std::stoll on a non-number
  return false;
}

// Uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)) like PyTorch's default init; norm gains 1 + noise.
std::map<std::string, at::Tensor, std::less<>> RandomWeights(const WanVaeConfig& config) {
  at::manual_seed(0);
  std::map<std::string, at::Tensor, std::less<>> tensors;
  for (const ParamSpec& spec : WanVaeDecoderParamSpecs(config)) {
    at::Tensor t;
    if (spec.name.ends_with(".gamma")) {
      t = 1.0 + 0.1 * at::randn(spec.shape);
    } else {
      const double fan_in = spec.shape.size() > 1
                                ? static_cast<double>(spec.numel() / spec.shape[0])
                                : static_cast<double>(spec.shape[0]);
      t = at::rand(spec.shape).mul_(2.0).sub_(1.0).mul_(1.0 / std::sqrt(fan_in));
    }
    tensors.emplace(spec.name, t);
  }
  return tensors;
}

double PeakRssMiB() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0.0;
}

struct Row {
  std::string device, dtype;
  int64_t pass_frames = 1, steady_frames = 0;
  double first_ms = 0, steady_ms = 0;
  int64_t predicted = 0, allocated = 0, weight_bytes = 0;
  double peak_rss_mib = 0;
  double first_flops = 0, steady_flops = 0;  // counted, per latent frame
};

// Waits for the device: a scalar read synchronises CUDA.
void Sync(const at::Tensor& t) { (void)t.sum().item<float>(); }

bool RunOne(const WanVaeConfig& config,
            const std::map<std::string, at::Tensor, std::less<>>& weights, const BenchArgs& args,
            const std::string& device, int64_t pass_frames, Row* row) {
  VaeOptions options;
  options.device = device;
  options.dtype = args.dtype == "bf16" ? at::kBFloat16 : at::kFloat;
  options.max_frames_per_pass = pass_frames;
  auto decoder = WanVaeDecoder::FromTensors(config, weights, options);
  if (!decoder.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(decoder.status().message()).c_str());
    return false;
  }
  const int64_t h = args.height / 8, w = args.width / 8;
  auto predicted = (*decoder)->CacheBytes(h, w);
  auto cache = (*decoder)->NewCache(h, w);
  if (!predicted.ok() || !cache.ok()) {
    std::fprintf(
        stderr, "error: %s\n",
        std::string((predicted.ok() ? cache.status() : predicted.status()).message()).c_str());
    return false;
  }
  const bool cuda = (*decoder)->device().is_cuda();
  const int64_t steady = args.frames > 0 ? args.frames : (cuda ? 10 : 1);
  at::manual_seed(1);
  const at::Tensor z = at::randn({1, config.z_dim, 1 + steady, h, w}).to((*decoder)->device());
  if (cuda) {  // warm-up stream (cuDNN algorithm choice, allocator)
    auto warm = (*decoder)->NewCache(h, w);
    Sync((*decoder)->DecodeBlock(z.narrow(2, 0, 1), warm->get()));
    Sync((*decoder)->DecodeBlock(z.narrow(2, 1, std::min<int64_t>(steady, pass_frames)),
                                 warm->get()));
  }
  auto t0 = Clock::now();
  Sync((*decoder)->DecodeBlock(z.narrow(2, 0, 1), cache->get()));
  auto t1 = Clock::now();
  Sync((*decoder)->DecodeBlock(z.narrow(2, 1, steady), cache->get()));
  auto t2 = Clock::now();

  row->device = device;
  row->dtype = args.dtype;
  row->pass_frames = pass_frames;
  row->steady_frames = steady;
  row->first_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  row->steady_ms = std::chrono::duration<double, std::milli>(t2 - t1).count() / steady;
  row->predicted = *predicted;
  row->allocated = (*cache)->bytes();
  for (const auto& [name, t] : (*decoder)->named_parameters()) {
    row->weight_bytes += t.numel() * t.element_size();
  }
  row->peak_rss_mib = PeakRssMiB();
  auto first_flops = CountWanVaeDecodeFlops(config, h, w, /*first_frame=*/true);
  auto steady_flops = CountWanVaeDecodeFlops(config, h, w, /*first_frame=*/false);
  if (first_flops.ok() && steady_flops.ok()) {
    row->first_flops = first_flops->total;
    row->steady_flops = steady_flops->total;
  }
  return true;
}

int Main(int argc, char** argv) {
  BenchArgs args;
  if (!ParseArgs(argc, argv, &args)) {
    std::fprintf(stderr,
                 "usage: %s [--config PATH] [--width 832] [--height 480] [--frames N] "
                 "[--device auto|cpu|cuda] [--dtype fp32|bf16] [--pass-frames K,...] "
                 "[--threads N] [--peak-tflops T] [--tf32]\n(width and height must be "
                 "multiples of 8)\n",
                 argv[0]);
    return 2;
  }
  at::set_num_threads(args.threads);
  at::globalContext().setFlushDenormal(true);
  auto config = WanVaeConfig::FromFile(args.config);
  if (!config.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  std::vector<std::string> devices;
  if (args.device == "auto") {
    devices.push_back("cpu");
    if (at::hasCUDA()) devices.push_back("cuda");
  } else {
    devices.push_back(args.device);
  }
  if (at::hasCUDA()) {  // off: the reference numerics (model.md §8.1)
    at::globalContext().setAllowTF32CuDNN(args.tf32);
    at::globalContext().setAllowTF32CuBLAS(args.tf32);
  }
  const auto weights = RandomWeights(*config);
  std::printf("Wan VAE decoder, config %s, %lldx%lld video (latent %lldx%lld), %d CPU threads\n",
              args.config.c_str(), static_cast<long long>(args.width),
              static_cast<long long>(args.height), static_cast<long long>(args.width / 8),
              static_cast<long long>(args.height / 8), at::get_num_threads());
  std::vector<Row> rows;
  for (const std::string& device : devices) {
    // A steady-state latent frame takes minutes on CPU: one pass size unless asked.
    std::vector<int64_t> passes = args.pass_frames;
    if (passes.empty())
      passes = device == "cpu" ? std::vector<int64_t>{1} : std::vector<int64_t>{1, 2, 4};
    for (int64_t k : passes) {
      Row row;
      try {
        if (!RunOne(*config, weights, args, device, k, &row)) return 1;
      } catch (const c10::Error& e) {
        std::fprintf(stderr, "error on %s: %s\n", device.c_str(), e.what_without_backtrace());
        return 1;
      }
      rows.push_back(row);
    }
  }
  std::printf(
      "\n| device | dtype | frames/pass | latent frame 0 (1 video frame) ms | later latent frame "
      "(4 video frames) ms [n] | GFLOP frame 0 / later | TFLOP/s later | MFU %% | cache "
      "bytes/session predicted | allocated | weights bytes | peak RSS MiB |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    const double tflops_per_s = r.steady_flops / (r.steady_ms / 1000.0) / 1e12;
    const std::string mfu =
        args.peak_tflops > 0 ? fmt::format("{:.1f}", 100 * tflops_per_s / args.peak_tflops) : "-";
    std::printf(
        "%s",
        fmt::format("| {} | {}{} | {} | {:.1f} | {:.1f} [{}] | {:.0f} / {:.0f} | {:.2f} | {} | {} "
                    "({:.3f} GiB) | {} | {} | {:.0f} |\n",
                    r.device, r.dtype, args.tf32 && r.device != "cpu" ? " (TF32)" : "",
                    r.pass_frames, r.first_ms, r.steady_ms, r.steady_frames, r.first_flops / 1e9,
                    r.steady_flops / 1e9, tflops_per_s, mfu, r.predicted,
                    static_cast<double>(r.predicted) / (1 << 30), r.allocated, r.weight_bytes,
                    r.peak_rss_mib)
            .c_str());
  }
  // One line per row for scripts/gpu/check.sh's summary table.
  for (const Row& r : rows) {
    const double tflops_per_s = r.steady_flops / (r.steady_ms / 1000.0) / 1e12;
    std::printf(
        "%s", fmt::format("SUMMARY | VAE decode {} {}{} {}x{}, {} latent frames/pass | "
                          "{:.1f} ms per later latent frame (frame 0: {:.1f} ms) | {:.1f} "
                          "video frames/s | {:.1f} TFLOP/s of {:.2f} TFLOP counted{} | "
                          "cache {:.2f} GiB/session |\n",
                          r.device, r.dtype, args.tf32 && r.device != "cpu" ? "+TF32" : "",
                          args.width, args.height, r.pass_frames, r.steady_ms, r.first_ms,
                          4000.0 / r.steady_ms, tflops_per_s, r.steady_flops / 1e12,
                          args.peak_tflops > 0
                              ? fmt::format(", MFU {:.1f}%", 100 * tflops_per_s / args.peak_tflops)
                              : "",
                          static_cast<double>(r.predicted) / (1 << 30))
                  .c_str());
  }
  return 0;
}

}  // namespace
}  // namespace longsana::engine

int main(int argc, char** argv) { return longsana::engine::Main(argc, argv); }
