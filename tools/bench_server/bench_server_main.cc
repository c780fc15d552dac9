// longsana-bench-server: what the gRPC front end costs, and how throughput scales with
// concurrent sessions.
//
//   1. The same request, run R times directly on the engine (Engine::Submit with an
//      in-process sink) and R times through an in-process gRPC server on localhost
//      (Generate stub, events parsed, chunks concatenated): median end-to-end seconds and
//      time to first chunk, and the ratio gRPC / direct.
//   2. Aggregate generated frames per second with 1, 2 and 4 concurrent Generate streams
//      (--sessions), the median time to first chunk, the slowest session's own fps, and how
//      many of the sessions kept real time (their fps >= --fps).
//
// Sessions render as fast as they can (pacing PACING_AS_FAST_AS_POSSIBLE): this measures
// throughput, not the paced service. Defaults: the tiny checkpoint on CPU, 64x64, 81 frames.
// Prints a table, and SUMMARY lines for scripts/gpu/check.sh. At the real size on a GPU:
// a folder from longsana-random-model, --caption_len 300 --width 832 --height 480.
#include <fmt/format.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "engine/api/engine.h"
#include "longsana/v1/longsana.grpc.pb.h"
#include "server/server.h"

ABSL_FLAG(std::string, model_dir, "tests/testdata/tiny-longsana", "Model directory.");
ABSL_FLAG(std::string, device, "cpu", "cpu | cuda");
ABSL_FLAG(int, threads, 0, "CPU intra-op threads (0: one per core).");
ABSL_FLAG(int, caption_len, 24, "Caption tokens.");
ABSL_FLAG(int, width, 64, "Frame width.");
ABSL_FLAG(int, height, 64, "Frame height.");
ABSL_FLAG(int, frames, 81, "Video frames per session (1 + 4k).");
ABSL_FLAG(int, repeats, 3, "Runs per measurement (median reported).");
ABSL_FLAG(bool, metrics, true,
          "Record Prometheus metrics (server and engine observer); off measures their cost.");
ABSL_FLAG(std::vector<std::string>, sessions, std::vector<std::string>({"1", "2", "4"}),
          "Concurrent session counts for the throughput table.");
ABSL_FLAG(std::string, vae_dtype, "fp32", "fp32 | bf16 (the server's --vae_dtype).");
ABSL_FLAG(int, fps, 16, "Video frame rate: a session keeps real time at this many frames/s.");

namespace {

using Clock = std::chrono::steady_clock;
namespace v1 = longsana::v1;
namespace engine = longsana::engine;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

// Collects one session's completion for the direct-engine runs.
class WaitingSink final : public engine::ChunkSink {
 public:
  void OnQueued(int, double) override {}
  void OnStarted() override {}
  void OnProgress(int64_t, int, int) override {}
  void OnChunk(engine::VideoChunk chunk) override {
    std::lock_guard lock(mu_);
    if (chunk.num_frames > 0 && first_chunk_ < 0) first_chunk_ = Since(start_);
    bytes_ += chunk.bytes.size();
  }
  void OnCommandAck(const engine::CommandAck&) override {}
  void OnCompleted(const engine::CompletionStats& stats) override {
    std::lock_guard lock(mu_);
    frames_ = stats.frames;
    done_ = true;
    cv_.notify_all();
  }
  void OnFailed(const absl::Status& status) override {
    std::lock_guard lock(mu_);
    status_ = status;
    done_ = true;
    cv_.notify_all();
  }
  absl::Status Wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return done_; });
    return status_;
  }
  double first_chunk() const { return first_chunk_; }

 private:
  const Clock::time_point start_ = Clock::now();
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  absl::Status status_;
  double first_chunk_ = -1;
  int64_t frames_ = 0;
  size_t bytes_ = 0;
};

struct Run {
  double seconds = 0;
  double first_chunk = 0;
  int64_t frames = 0;
};

engine::SessionSpec Spec(uint64_t seed) {
  engine::SessionSpec s;
  s.prompt = "a paper boat drifting down a rainy street";
  s.width = absl::GetFlag(FLAGS_width);
  s.height = absl::GetFlag(FLAGS_height);
  s.num_frames = absl::GetFlag(FLAGS_frames);
  s.seed = seed;
  return s;
}

v1::GenerateRequest Request(uint64_t seed) {
  v1::GenerateRequest r;
  r.set_prompt("a paper boat drifting down a rainy street");
  r.set_width(static_cast<uint32_t>(absl::GetFlag(FLAGS_width)));
  r.set_height(static_cast<uint32_t>(absl::GetFlag(FLAGS_height)));
  r.set_num_frames(static_cast<uint32_t>(absl::GetFlag(FLAGS_frames)));
  r.set_seed(seed);
  return r;
}

absl::StatusOr<Run> Direct(engine::Engine& e, uint64_t seed) {
  const auto start = Clock::now();
  auto sink = std::make_shared<WaitingSink>();
  auto info = e.Submit(Spec(seed), sink);
  if (!info.ok()) return info.status();
  if (auto s = sink->Wait(); !s.ok()) return s;
  return Run{Since(start), sink->first_chunk(), info->num_frames};
}

absl::StatusOr<Run> OverGrpc(v1::LongSana::Stub& stub, uint64_t seed) {
  const auto start = Clock::now();
  grpc::ClientContext context;
  auto reader = stub.Generate(&context, Request(seed));
  v1::GenerateEvent event;
  Run run;
  run.first_chunk = -1;
  std::string video;
  while (reader->Read(&event)) {
    if (event.has_chunk()) {
      if (event.chunk().num_frames() > 0 && run.first_chunk < 0) run.first_chunk = Since(start);
      video += event.chunk().data();
    }
    if (event.has_completed()) run.frames = event.completed().frames();
  }
  const grpc::Status status = reader->Finish();
  if (!status.ok()) return absl::InternalError(status.error_message());
  run.seconds = Since(start);
  return run;
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
  config.max_sessions = 4;
  config.queue_size = 16;
  config.encoder_threads = 1;
  config.fps = absl::GetFlag(FLAGS_fps);
  config.default_pacing = engine::Pacing::kAsFastAsPossible;
  config.vae_dtype = absl::GetFlag(FLAGS_vae_dtype) == "bf16" ? engine::VaeDtype::kBFloat16
                                                              : engine::VaeDtype::kFloat32;
  std::vector<int> counts;
  for (const auto& s : absl::GetFlag(FLAGS_sessions)) counts.push_back(std::stoi(s));
  config.max_sessions = std::max(4, *std::max_element(counts.begin(), counts.end()));

  auto metrics = std::make_shared<longsana::server::ServerMetrics>(
      longsana::server::ServerMetrics::Options{.enabled = absl::GetFlag(FLAGS_metrics)});
  config.observer = metrics;
  const auto load_start = Clock::now();
  auto created = engine::CreateEngine(config);
  if (!created.ok()) {
    fmt::print(stderr, "CreateEngine: {}\n", created.status().ToString());
    return 1;
  }
  std::shared_ptr<engine::Engine> eng(std::move(*created));
  fmt::print("engine: {} on {} loaded + warmed up in {:.2f} s\n", config.model_dir,
             absl::GetFlag(FLAGS_device), Since(load_start));

  longsana::server::ServerOptions options;
  options.listen = "127.0.0.1:0";
  options.http_listen = "127.0.0.1:0";  // a free port, never the default 8080
  auto server = longsana::server::Server::Start(options, metrics);
  if (!server.ok()) {
    fmt::print(stderr, "server: {}\n", server.status().ToString());
    return 1;
  }
  (*server)->SetEngine(eng);
  auto stub = v1::LongSana::NewStub(
      grpc::CreateChannel((*server)->address(), grpc::InsecureChannelCredentials()));

  const int repeats = absl::GetFlag(FLAGS_repeats);
  const int frames = absl::GetFlag(FLAGS_frames);
  fmt::print("request: {}x{}, {} frames; {} runs each, median; metrics {}\n\n",
             absl::GetFlag(FLAGS_width), absl::GetFlag(FLAGS_height), frames, repeats,
             absl::GetFlag(FLAGS_metrics) ? "on" : "off");

  // Warm both paths once (first-call allocations, the channel's connection).
  if (auto r = Direct(*eng, 1); !r.ok()) {
    fmt::print(stderr, "direct: {}\n", r.status().ToString());
    return 1;
  }
  if (auto r = OverGrpc(*stub, 1); !r.ok()) {
    fmt::print(stderr, "grpc: {}\n", r.status().ToString());
    return 1;
  }
  std::vector<double> direct_s, direct_ttfc, grpc_s, grpc_ttfc;
  for (int i = 0; i < repeats; ++i) {
    auto d = Direct(*eng, 7);
    auto g = OverGrpc(*stub, 7);
    if (!d.ok() || !g.ok()) {
      fmt::print(stderr, "run failed: {} / {}\n", d.status().ToString(), g.status().ToString());
      return 1;
    }
    direct_s.push_back(d->seconds);
    direct_ttfc.push_back(d->first_chunk);
    grpc_s.push_back(g->seconds);
    grpc_ttfc.push_back(g->first_chunk);
  }
  const double d = Median(direct_s), g = Median(grpc_s);
  fmt::print("| path            | total s | first chunk s | fps    |\n");
  fmt::print("|-----------------|---------|---------------|--------|\n");
  fmt::print("| engine (direct) | {:7.3f} | {:13.3f} | {:6.1f} |\n", d, Median(direct_ttfc),
             frames / d);
  fmt::print("| gRPC end to end | {:7.3f} | {:13.3f} | {:6.1f} |\n", g, Median(grpc_ttfc),
             frames / g);
  fmt::print("gRPC / direct = {:.3f} (overhead {:+.1f} ms per session)\n\n", g / d, (g - d) * 1000);

  fmt::print(
      "| sessions | wall s | frames | aggregate fps | per-session fps | slowest fps | "
      "first chunk s (median) | real-time sessions |\n");
  fmt::print(
      "|----------|--------|--------|---------------|-----------------|-------------|"
      "------------------------|--------------------|\n");
  const double realtime_fps = absl::GetFlag(FLAGS_fps);
  for (int n : counts) {
    std::vector<double> walls, ttfc;
    int64_t total_frames = 0;
    double slowest = 0;
    int realtime = 0;
    for (int rep = 0; rep < repeats; ++rep) {
      const auto start = Clock::now();
      std::vector<std::future<absl::StatusOr<Run>>> runs;
      for (int i = 0; i < n; ++i) {
        runs.push_back(std::async(std::launch::async, [&, i] {
          return OverGrpc(*stub, 100 + static_cast<uint64_t>(i));
        }));
      }
      total_frames = 0;
      slowest = 1e300;
      realtime = 0;
      for (auto& f : runs) {
        auto r = f.get();
        if (!r.ok()) {
          fmt::print(stderr, "session failed: {}\n", r.status().ToString());
          return 1;
        }
        total_frames += r->frames;
        ttfc.push_back(r->first_chunk);
        const double own = r->frames / r->seconds;
        slowest = std::min(slowest, own);
        if (own >= realtime_fps) ++realtime;
      }
      walls.push_back(Since(start));
    }
    const double wall = Median(walls);
    fmt::print("| {:8d} | {:6.2f} | {:6d} | {:13.1f} | {:15.1f} | {:11.1f} | {:22.3f} | {:>18} |\n",
               n, wall, total_frames, total_frames / wall, total_frames / wall / n, slowest,
               Median(ttfc), fmt::format("{} of {}", realtime, n));
    fmt::print(
        "SUMMARY | engine, {} sessions of {}x{}, {} frames (VAE {}) | {:.1f} video "
        "frames/s together | first chunk {:.2f} s | {} of {} kept real time ({} fps) "
        "|\n",
        n, absl::GetFlag(FLAGS_width), absl::GetFlag(FLAGS_height), frames,
        absl::GetFlag(FLAGS_vae_dtype), total_frames / wall, Median(ttfc), realtime, n,
        absl::GetFlag(FLAGS_fps));
  }
  const engine::EngineStats stats = eng->Stats();
  fmt::print("\nengine: {} forwards, {:.2f} work items per forward\n", stats.forwards,
             stats.forwards > 0 ? static_cast<double>(stats.forward_items) / stats.forwards : 0.0);
  (*server)->Shutdown(std::chrono::seconds(5));
  return 0;
}
