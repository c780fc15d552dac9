// longsana-bench-media: streaming fMP4 encoder throughput and output size.
//
// Encodes a session of blocks of the smooth moving test pattern (first block 41 frames, the
// later ones 40, as a 1 + 4 (T - 1) frame VAE output gives) at 832x480 and the default
// settings (16 fps, CRF 23, preset veryfast, tune zerolatency, profile high), once per thread
// count, and prints encode throughput (frames/s over EncodeBlock calls only: RGB->YUV
// conversion, x264, muxing; rendering the input is not timed), the same per CPU-second of
// the process (all threads; less sensitive to other load on the machine than wall time),
// block latency, bytes per 40-frame block and the init segment size.
//
//   longsana-bench-media [--width 832] [--height 480] [--blocks 6] [--threads 1,2,0]
//                        [--preset veryfast] [--crf 23 | --bitrate-bps N] [--fps 16]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <sstream>
#include <string>
#include <vector>

#include "engine/media/fmp4_encoder.h"
#include "engine/media/test_pattern.h"
#include "fmt/format.h"

extern "C" {
#include <libavutil/log.h>
}

namespace longsana::engine {
namespace {

using Clock = std::chrono::steady_clock;

struct BenchArgs {
  EncoderSettings settings;
  int blocks = 6;
  std::vector<int> threads = {1, 2, 0};
};

bool ParseArgs(int argc, char** argv, BenchArgs* args) {
  args->settings.width = 832;
  args->settings.height = 480;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) {
      std::fprintf(stderr, "missing value for %s\n", a.c_str());
      return false;
    }
    const std::string value = argv[++i];
    try {
      if (a == "--width")
        args->settings.width = std::stoi(value);
      else if (a == "--height")
        args->settings.height = std::stoi(value);
      else if (a == "--fps")
        args->settings.fps = std::stoi(value);
      else if (a == "--blocks")
        args->blocks = std::stoi(value);
      else if (a == "--preset")
        args->settings.preset = value;
      else if (a == "--crf")
        args->settings.crf = std::stoi(value);
      else if (a == "--bitrate-bps")
        args->settings.bitrate_bps = std::stoll(value);
      else if (a == "--threads") {
        args->threads.clear();
        std::stringstream list(value);
        for (std::string item; std::getline(list, item, ',');) {
          args->threads.push_back(std::stoi(item));
        }
      } else {
        std::fprintf(stderr, "unknown flag %s\n", a.c_str());
        return false;
      }
    } catch (const std::exception&) {
      std::fprintf(stderr, "bad value '%s' for %s\n", value.c_str(), a.c_str());
      return false;
    }
  }
  if (args->blocks < 1 || args->threads.empty()) {
    std::fprintf(stderr, "--blocks must be >= 1 and --threads non-empty\n");
    return false;
  }
  return true;
}

struct RunResult {
  int64_t frames = 0;
  double encode_seconds = 0;
  double cpu_seconds = 0;  // process CPU time (all threads) inside EncodeBlock
  double max_block_ms = 0;
  double bytes_per_40_frame_block = 0;
  size_t first_block_bytes = 0;
  size_t init_bytes = 0;
  std::string codec;
};

int BlockFrames(int block) { return block == 0 ? 41 : 40; }

int Run(const BenchArgs& args) {
  const EncoderSettings& base = args.settings;
  if (absl::Status valid = base.Validate(); !valid.ok()) {
    std::fprintf(stderr, "%s\n", valid.ToString().c_str());
    return 2;
  }
  // Render every block once up front; each run encodes the same input.
  std::vector<std::vector<uint8_t>> input;
  int64_t frame = 0;
  for (int b = 0; b < args.blocks; ++b) {
    input.push_back(RenderTestPatternBlock(base.width, base.height, frame, BlockFrames(b)));
    frame += BlockFrames(b);
  }

  std::vector<std::pair<int, RunResult>> results;
  for (int threads : args.threads) {
    EncoderSettings settings = base;
    settings.threads = threads;
    absl::StatusOr<std::unique_ptr<Fmp4Encoder>> encoder = Fmp4Encoder::Create(settings);
    if (!encoder.ok()) {
      std::fprintf(stderr, "Create: %s\n", encoder.status().ToString().c_str());
      return 1;
    }
    RunResult r;
    r.init_bytes = (*encoder)->init_segment().size();
    r.codec = (*encoder)->codec_string();
    size_t bytes_40 = 0;
    int blocks_40 = 0;
    for (int b = 0; b < args.blocks; ++b) {
      const auto start = Clock::now();
      const std::clock_t cpu_start = std::clock();
      absl::StatusOr<EncodedFragment> fragment = (*encoder)->EncodeBlock(input[b], BlockFrames(b));
      const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
      r.cpu_seconds += static_cast<double>(std::clock() - cpu_start) / CLOCKS_PER_SEC;
      if (!fragment.ok()) {
        std::fprintf(stderr, "EncodeBlock: %s\n", fragment.status().ToString().c_str());
        return 1;
      }
      r.frames += fragment->num_frames;
      r.encode_seconds += seconds;
      r.max_block_ms = std::max(r.max_block_ms, seconds * 1e3);
      if (b == 0) {
        r.first_block_bytes = fragment->bytes.size();
      } else {
        bytes_40 += fragment->bytes.size();
        ++blocks_40;
      }
    }
    r.bytes_per_40_frame_block = blocks_40 > 0 ? static_cast<double>(bytes_40) / blocks_40 : 0;
    results.emplace_back(threads, r);
  }

  const std::string rate = base.bitrate_bps ? fmt::format("bitrate {} bit/s", *base.bitrate_bps)
                                            : fmt::format("crf {}", base.EffectiveCrf());
  std::printf("longsana-bench-media: %dx%d @ %d fps, preset %s, %s, tune zerolatency, profile %s\n",
              base.width, base.height, base.fps, base.preset.c_str(), rate.c_str(),
              base.profile.c_str());
  std::printf("input: %d blocks (41 + %d x 40 frames) of the smooth moving test pattern\n",
              args.blocks, args.blocks - 1);
  std::printf("init segment: %zu bytes, codec %s\n\n", results.front().second.init_bytes,
              results.front().second.codec.c_str());
  std::printf(
      "| threads | frames | encode s | frames/s | frames/CPU-s | ms/block mean "
      "| ms/block max | bytes/block (41-frame first) | bytes/block (40 frames) "
      "| kbit/s |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  for (const auto& [threads, r] : results) {
    const double kbps = r.bytes_per_40_frame_block * 8.0 / (40.0 / base.fps) / 1e3;
    std::printf("| %s | %lld | %.3f | %.1f | %.1f | %.1f | %.1f | %zu | %.0f | %.0f |\n",
                threads == 0 ? "auto" : std::to_string(threads).c_str(),
                static_cast<long long>(r.frames), r.encode_seconds, r.frames / r.encode_seconds,
                r.frames / r.cpu_seconds, r.encode_seconds * 1e3 / args.blocks, r.max_block_ms,
                r.first_block_bytes, r.bytes_per_40_frame_block, kbps);
  }
  return 0;
}

}  // namespace
}  // namespace longsana::engine

int main(int argc, char** argv) {
  // x264 prints per-encoder statistics at INFO; keep the table readable.
  av_log_set_level(AV_LOG_WARNING);
  longsana::engine::BenchArgs args;
  if (!longsana::engine::ParseArgs(argc, argv, &args)) return 2;
  return longsana::engine::Run(args);
}
