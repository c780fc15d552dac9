// longsana-bench-pacing: what pacing does (engine/scheduler/pacing.h), measured on the engine.
//
//   1. Switch-to-visible latency: one paced session; after each block's chunk (plus a random
//      wait within the block, like a user typing) a switch_prompt. For lookahead 1 and 2
//      blocks: p50 / p99 of the latency (command arrival -> first chunk with the new prompt)
//      and of the playback delay (how much later in the viewer's video the prompt shows),
//      in seconds and in blocks.
//   2. Aggregate throughput of four paced sessions vs four as-fast-as-possible ones: video
//      frames per wall second, the share of wall time spent in DiT forwards, and how long
//      the paced viewers waited for video (stalls).
//
// --fps scales real time (a block lasts 40 / fps seconds): the model and its cost do not
// change, only how fast the viewer's clock runs. Defaults: the tiny checkpoint on CPU, 32x32.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "engine/api/engine.h"

ABSL_FLAG(std::string, model_dir, "tests/testdata/tiny-longsana", "Model directory.");
ABSL_FLAG(std::string, device, "cpu", "cpu | cuda");
ABSL_FLAG(int, threads, 0, "CPU intra-op threads (0: one per core).");
ABSL_FLAG(int, caption_len, 24, "Caption tokens.");
ABSL_FLAG(int, width, 32, "Frame width.");
ABSL_FLAG(int, height, 32, "Frame height.");
ABSL_FLAG(int, fps, 16, "Frame rate of the viewer's clock (a block lasts 40 / fps s).");
ABSL_FLAG(int, switches, 50, "Prompt switches per lookahead.");
ABSL_FLAG(int, blocks, 12, "Blocks per session in the throughput runs.");

namespace {

using Clock = std::chrono::steady_clock;
namespace engine = longsana::engine;

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size()))) - 1;
  return v[std::min(i, v.size() - 1)];
}

// Records chunks; tracks a viewer (real time from the first chunk, waiting when it runs out
// of video) to count its stalls.
class Sink : public engine::ChunkSink {
 public:
  explicit Sink(int fps) : fps_(fps) {}
  void OnQueued(int, double) override {}
  void OnStarted() override {}
  void OnProgress(int64_t, int, int) override {}
  void OnChunk(engine::VideoChunk chunk) override {
    std::lock_guard lock(mu_);
    if (chunk.block_index < 0) return;
    const auto now = Clock::now();
    if (chunk.switch_visible) visible.push_back(*chunk.switch_visible);
    // The viewer plays what it has; a chunk that arrives after the viewer ran out ends a stall.
    if (!first_) {
      first_ = now;
      played_until_ = now;
    } else if (now > played_until_) {
      stall_seconds += std::chrono::duration<double>(now - played_until_).count();
      played_until_ = now;
    }
    played_until_ += std::chrono::duration_cast<Clock::duration>(
        std::chrono::duration<double>(static_cast<double>(chunk.num_frames) / fps_));
    frames += chunk.num_frames;
    ++blocks;
    cv_.notify_all();
  }
  void OnCommandAck(const engine::CommandAck&) override {}
  void OnCompleted(const engine::CompletionStats&) override { End(absl::OkStatus()); }
  void OnFailed(const absl::Status& s) override { End(s); }

  void End(const absl::Status& s) {
    std::lock_guard lock(mu_);
    status = s;
    done = true;
    cv_.notify_all();
  }
  bool WaitBlocks(int64_t n) {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return blocks >= n || done; });
    return blocks >= n;
  }
  void WaitDone() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return done; });
  }

  std::mutex mu_;
  std::condition_variable cv_;
  const int fps_;
  std::vector<engine::VideoChunk::SwitchVisible> visible;
  std::optional<Clock::time_point> first_;
  Clock::time_point played_until_{};
  double stall_seconds = 0;
  int64_t frames = 0, blocks = 0;
  bool done = false;
  absl::Status status;
};

engine::SessionSpec BaseSpec(int blocks, int seed) {
  engine::SessionSpec s;
  s.prompt = "a paper boat drifts down a rainy street";
  s.width = absl::GetFlag(FLAGS_width);
  s.height = absl::GetFlag(FLAGS_height);
  s.num_frames = 1 + 4 * (10 * blocks - 1);
  s.seed = static_cast<uint64_t>(seed);
  s.interactive = true;
  return s;
}

void SwitchLatency(engine::Engine& e, double block_seconds, int lookahead_blocks) {
  const int switches = absl::GetFlag(FLAGS_switches);
  engine::SessionSpec spec = BaseSpec(1, 1);
  spec.live = true;
  spec.pacing = engine::Pacing::kRealTime;
  spec.lookahead_seconds = lookahead_blocks * block_seconds;
  auto sink = std::make_shared<Sink>(absl::GetFlag(FLAGS_fps));
  auto info = e.Submit(spec, sink);
  if (!info.ok()) {
    fmt::print("submit failed: {}\n", info.status().ToString());
    return;
  }
  std::mt19937 rng(lookahead_blocks);
  std::uniform_real_distribution<double> within(0, block_seconds);
  uint64_t command = 0;
  for (int i = 0; i < switches; ++i) {
    if (!sink->WaitBlocks(i + 1)) break;
    std::this_thread::sleep_for(std::chrono::duration<double>(within(rng)));
    (void)e.Command(info->id, ++command,
                    engine::SessionCommand(engine::SwitchPromptCommand{
                        fmt::format("a paper boat, scene {}", i), engine::PromptSwitchMode::kImmediate,
                        0}));
  }
  sink->WaitBlocks(switches + lookahead_blocks + 2);
  (void)e.Command(info->id, ++command, engine::SessionCommand(engine::StopCommand{}));
  sink->WaitDone();
  std::vector<double> latency, delay;
  {
    std::lock_guard lock(sink->mu_);
    for (const auto& v : sink->visible) {
      latency.push_back(v.latency_seconds);
      delay.push_back(v.playback_delay_seconds);
    }
  }
  fmt::print("| {} block{} ({:.2f} s) | {} | {:.2f} s ({:.2f} blocks) | {:.2f} s ({:.2f}) | "
             "{:.2f} s ({:.2f}) | {:.2f} s ({:.2f}) |\n",
             lookahead_blocks, lookahead_blocks == 1 ? "" : "s", lookahead_blocks * block_seconds,
             latency.size(), Percentile(latency, 0.5), Percentile(latency, 0.5) / block_seconds,
             Percentile(latency, 0.99), Percentile(latency, 0.99) / block_seconds,
             Percentile(delay, 0.5), Percentile(delay, 0.5) / block_seconds,
             Percentile(delay, 0.99), Percentile(delay, 0.99) / block_seconds);
}

// Time from Submit to the first fragment, one fragment per block vs per latent frame,
// alternating, as fast as possible, one session at a time.
void FirstChunk(engine::Engine& e, int repeats) {
  std::vector<double> ttfc[2];
  for (int r = 0; r < repeats; ++r) {
    for (int mode = 0; mode < 2; ++mode) {
      engine::SessionSpec spec = BaseSpec(2, 100 + r);
      spec.pacing = engine::Pacing::kAsFastAsPossible;
      spec.encode.fragment_per_latent_frame = mode == 1;
      auto sink = std::make_shared<Sink>(e.Info().fps);
      const auto t0 = Clock::now();
      if (!e.Submit(spec, sink).ok()) return;
      sink->WaitBlocks(1);
      ttfc[mode].push_back(std::chrono::duration<double>(Clock::now() - t0).count());
      sink->WaitDone();
    }
  }
  const double block = Percentile(ttfc[0], 0.5), latent = Percentile(ttfc[1], 0.5);
  fmt::print("| {} | {:.4f} s | {:.4f} s | {:.1f}x |\n", repeats, block, latent,
             latent > 0 ? block / latent : 0.0);
}

void Throughput(engine::Engine& e, engine::Pacing pacing, const char* name) {
  const int blocks = absl::GetFlag(FLAGS_blocks);
  const auto before = e.Stats();
  const auto t0 = Clock::now();
  std::vector<std::shared_ptr<Sink>> sinks;
  for (int i = 0; i < 4; ++i) {
    engine::SessionSpec spec = BaseSpec(blocks, 10 + i);
    spec.pacing = pacing;
    if (pacing == engine::Pacing::kRealTime) spec.lookahead_seconds = 2 * 40.0 / e.Info().fps;
    sinks.push_back(std::make_shared<Sink>(absl::GetFlag(FLAGS_fps)));
    if (auto info = e.Submit(spec, sinks.back()); !info.ok()) {
      fmt::print("submit failed: {}\n", info.status().ToString());
      return;
    }
  }
  int64_t frames = 0;
  double stalls = 0;
  for (auto& s : sinks) {
    s->WaitDone();
    frames += s->frames;
    stalls = std::max(stalls, s->stall_seconds);
  }
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  const auto after = e.Stats();
  fmt::print("| {} | {} | {:.1f} s | {:.1f} | {} | {:.2f} s |\n", name, frames, wall,
             static_cast<double>(frames) / wall, after.forwards - before.forwards, stalls);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  spdlog::set_level(spdlog::level::warn);
  engine::EngineConfig config;
  config.model_dir = absl::GetFlag(FLAGS_model_dir);
  config.device =
      absl::GetFlag(FLAGS_device) == "cuda" ? engine::DeviceKind::kCuda : engine::DeviceKind::kCpu;
  config.threads = absl::GetFlag(FLAGS_threads);
  config.caption_len = absl::GetFlag(FLAGS_caption_len);
  config.fps = absl::GetFlag(FLAGS_fps);
  config.min_lookahead_seconds = 0.1;
  config.max_sessions = 4;
  config.realtime_utilization = 0;  // measure pacing alone, not admission
  auto e = engine::CreateEngine(config);
  if (!e.ok()) {
    fmt::print(stderr, "{}\n", e.status().ToString());
    return 1;
  }
  const double block_seconds = 40.0 / config.fps;
  fmt::print("longsana-bench-pacing: {} on {}, {}x{}, {} fps (a block lasts {:.3f} s), {} "
             "threads\n\n",
             config.model_dir, absl::GetFlag(FLAGS_device), absl::GetFlag(FLAGS_width),
             absl::GetFlag(FLAGS_height), config.fps, block_seconds, config.threads);
  fmt::print("Switch-to-visible, one live paced session, a switch at a random point of each "
             "block:\n\n");
  fmt::print("| lookahead | switches seen | latency p50 | latency p99 | playback delay p50 | "
             "playback delay p99 |\n|---|---|---|---|---|---|\n");
  for (int lookahead : {1, 2}) SwitchLatency(**e, block_seconds, lookahead);
  fmt::print("\nTime to first chunk (Submit to the first fragment, median, alternating runs):\n\n"
             "| runs | per block | per latent frame | ratio |\n|---|---|---|---|\n");
  FirstChunk(**e, 9);
  fmt::print("\nFour sessions of {} blocks at once (stall: the longest a paced viewer waited "
             "for video):\n\n",
             absl::GetFlag(FLAGS_blocks));
  fmt::print("| pacing | frames | wall | frames/s | DiT forwards | worst viewer stall |\n"
             "|---|---|---|---|---|---|\n");
  Throughput(**e, engine::Pacing::kRealTime, "real time (lookahead 2 blocks)");
  Throughput(**e, engine::Pacing::kAsFastAsPossible, "as fast as possible");
  return 0;
}
