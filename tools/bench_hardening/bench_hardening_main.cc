// longsana-bench-hardening: what the hardened engine costs and bounds, on the real engine.
//
//   1. Eight concurrent sessions, one of them with x264 `placebo`: seconds until the last
//      one completes, with one media worker (the old single media thread) and with the
//      default pool; and the same eight without the placebo session.
//   2. Resident memory (VmRSS) after N short sessions, run four at a time.
//   3. Resident memory after M prompt switches sent to one session.
//
// Defaults: the tiny checkpoint on CPU. Prints a table; no assertions.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "engine/api/engine.h"

ABSL_FLAG(std::string, model_dir, "tests/testdata/tiny-longsana", "Model directory.");
ABSL_FLAG(int, caption_len, 24, "Caption tokens.");
ABSL_FLAG(int, size, 128, "Frame width and height of the eight sessions.");
ABSL_FLAG(int, frames, 81, "Video frames of each of the eight sessions.");
ABSL_FLAG(int, short_sessions, 1000, "Short sessions for the memory measurement.");
ABSL_FLAG(int, switches, 10000, "Prompt switches for the memory measurement.");

namespace {

namespace engine = longsana::engine;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double RssMiB() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    if (key == "VmRSS:") {
      double kib = 0;
      status >> kib;
      return kib / 1024;
    }
  }
  return 0;
}

class WaitingSink final : public engine::ChunkSink {
 public:
  void OnQueued(int, double) override {}
  void OnStarted() override {}
  void OnProgress(int64_t, int, int) override {}
  void OnChunk(engine::VideoChunk) override {}
  void OnCommandAck(const engine::CommandAck&) override {}
  void OnCompleted(const engine::CompletionStats&) override { End(absl::OkStatus()); }
  void OnFailed(const absl::Status& s) override { End(s); }
  bool Congested() const override { return hold; }
  absl::Status Wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return done_; });
    return status_;
  }
  std::atomic<bool> hold{false};

 private:
  void End(const absl::Status& s) {
    std::lock_guard lock(mu_);
    status_ = s;
    done_ = true;
    cv_.notify_all();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  absl::Status status_;
};

engine::EngineConfig Config(int media_workers) {
  engine::EngineConfig c;
  c.model_dir = absl::GetFlag(FLAGS_model_dir);
  c.caption_len = absl::GetFlag(FLAGS_caption_len);
  c.max_sessions = 8;
  c.max_batch = 8;
  c.media_workers = media_workers;
  c.policy.presets.push_back("placebo");
  return c;
}

engine::SessionSpec Spec(int size, int frames, uint64_t seed) {
  engine::SessionSpec s;
  s.prompt = "a red fox runs at dawn";
  s.width = size;
  s.height = size;
  s.num_frames = frames;
  s.seed = seed;
  return s;
}

// Seconds until the last of eight sessions completes.
double EightSessions(engine::Engine& e, bool with_placebo) {
  const auto t0 = Clock::now();
  std::vector<std::shared_ptr<WaitingSink>> sinks;
  for (int i = 0; i < 8; ++i) {
    engine::SessionSpec spec = Spec(absl::GetFlag(FLAGS_size), absl::GetFlag(FLAGS_frames), 1 + i);
    if (with_placebo && i == 0) spec.encode.preset = "placebo";
    sinks.push_back(std::make_shared<WaitingSink>());
    if (auto info = e.Submit(spec, sinks.back()); !info.ok()) {
      fmt::print(stderr, "submit: {}\n", info.status().ToString());
      return -1;
    }
  }
  for (auto& s : sinks) {
    if (auto st = s->Wait(); !st.ok()) fmt::print(stderr, "session: {}\n", st.ToString());
  }
  return Since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  spdlog::set_level(spdlog::level::warn);

  fmt::print("1. eight {}x{} sessions of {} frames, seconds until the last completes\n",
             absl::GetFlag(FLAGS_size), absl::GetFlag(FLAGS_size), absl::GetFlag(FLAGS_frames));
  fmt::print("   {:<28} {:>12} {:>14}\n", "media workers", "no placebo", "one placebo");
  for (int workers : {1, 0}) {
    auto e = engine::CreateEngine(Config(workers));
    if (!e.ok()) {
      fmt::print(stderr, "engine: {}\n", e.status().ToString());
      return 1;
    }
    const double plain = EightSessions(**e, false);
    const double placebo = EightSessions(**e, true);
    fmt::print("   {:<28} {:>12.2f} {:>14.2f}\n",
               workers == 1 ? "1 (the old single thread)" : "default pool", plain, placebo);
  }

  auto e = engine::CreateEngine(Config(0));
  if (!e.ok()) return 1;
  const double rss0 = RssMiB();
  const int n = absl::GetFlag(FLAGS_short_sessions);
  const auto t0 = Clock::now();
  for (int i = 0; i < n; i += 4) {
    std::vector<std::shared_ptr<WaitingSink>> sinks;
    for (int j = 0; j < 4 && i + j < n; ++j) {
      sinks.push_back(std::make_shared<WaitingSink>());
      (void)(*e)->Submit(Spec(32, 5, 1 + i + j), sinks.back());
    }
    for (auto& s : sinks) (void)s->Wait();
  }
  fmt::print("2. {} short sessions (32x32, 5 frames) in {:.1f} s: RSS {:.1f} -> {:.1f} MiB\n", n,
             Since(t0), rss0, RssMiB());

  const double rss1 = RssMiB();
  auto sink = std::make_shared<WaitingSink>();
  sink->hold = true;
  engine::SessionSpec spec = Spec(32, 41, 3);
  spec.interactive = true;
  auto info = (*e)->Submit(spec, sink);
  if (!info.ok()) return 1;
  const int m = absl::GetFlag(FLAGS_switches);
  int refused = 0;
  for (int i = 0; i < m; ++i) {
    auto ack = (*e)->Command(info->id, i + 1,
                             engine::SessionCommand(engine::SwitchPromptCommand{
                                 fmt::format("switch {} of a long burst", i),
                                 engine::PromptSwitchMode::kImmediate}));
    if (!ack.ok()) ++refused;
  }
  const double rss_burst = RssMiB();
  sink->hold = false;
  (void)sink->Wait();
  fmt::print("3. {} switches to one session ({} refused): RSS {:.1f} -> {:.1f} MiB after the "
             "burst, {:.1f} MiB after it completed\n",
             m, refused, rss1, rss_burst, RssMiB());
  return 0;
}
