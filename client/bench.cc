// `longsana bench`: the load tester (see commands.h, Bench). Each session runs on a thread of
// its own with a blocking stub; what it measures goes into a SessionRecord, and the report
// is computed from all of them at the end (client/bench_stats.h).
#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "client/bench_stats.h"
#include "client/rpc.h"

namespace longsana::client {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The fragment bookkeeping shared by the three kinds of session.
struct Recorder {
  SessionRecord record;
  Clock::time_point sent = Clock::now();
  std::vector<FragmentArrival> arrivals;
  double last_arrival = -1;

  void Event(const v1::GenerateEvent& e) {
    if (e.has_accepted()) record.accepted = true;
    if (!e.has_chunk() || e.chunk().block_index() < 0) return;
    const double now = Since(sent);
    const v1::VideoChunk& c = e.chunk();
    if (record.ttfc < 0) record.ttfc = now;
    if (last_arrival >= 0) record.gaps.push_back(now - last_arrival);
    last_arrival = now;
    arrivals.push_back({now, c.presentation_seconds(), c.duration_seconds()});
    record.video_seconds = c.presentation_seconds() + c.duration_seconds();
  }
  void Finish(const grpc::Status& status, double start_buffer) {
    record.code = CodeName(status.error_code());
    record.error = status.error_message();
    record.wall_seconds = Since(sent);
    record.viewer = SimulateViewer(arrivals, start_buffer);
  }
};

struct Shared {
  const BenchOptions& options;
  const RequestOptions& request;
  std::vector<ConnectionOptions> servers;
  Clock::time_point start = Clock::now();
  std::mutex mu;
  std::vector<SessionRecord> records;
  std::atomic<int> running{0};
  std::atomic<uint64_t> launched{0};
};

SessionRecord RunGenerate(Shared& shared, const ConnectionOptions& server) {
  Recorder r;
  auto stub = Connect(server);
  grpc::ClientContext context;
  PrepareContext(context, server);
  auto reader = stub->Generate(&context, BuildRequest(shared.options.prompt, shared.request));
  v1::GenerateEvent e;
  while (reader->Read(&e)) r.Event(e);
  r.Finish(reader->Finish(), shared.options.start_buffer_seconds);
  return r.record;
}

// A Session stream: a finite video with a switch every `switch_every` blocks, or (live) an
// open-ended one stopped after live_seconds of wall time.
SessionRecord RunSession(Shared& shared, const ConnectionOptions& server, bool live) {
  Recorder r;
  auto stub = Connect(server);
  grpc::ClientContext context;
  PrepareContext(context, server);
  auto stream = stub->Session(&context);
  v1::SessionCommand start;
  RequestOptions request = shared.request;
  request.live = live;
  *start.mutable_start() = BuildRequest(shared.options.prompt, request);
  stream->Write(start);
  std::map<uint64_t, Clock::time_point> switches;  // command id -> sent
  uint64_t next_command = 1;
  int64_t last_block = -1, blocks = 0;
  bool stop_sent = false;
  v1::GenerateEvent e;
  while (stream->Read(&e)) {
    r.Event(e);
    if (!e.has_chunk() || e.chunk().block_index() < 0) continue;
    const v1::VideoChunk& c = e.chunk();
    if (c.has_switch_visible()) {
      auto it = switches.find(c.switch_visible().command_id());
      if (it != switches.end()) {
        r.record.switch_latency.push_back(
            std::chrono::duration<double>(Clock::now() - it->second).count());
      }
    }
    if (c.block_index() != last_block) {
      last_block = c.block_index();
      ++blocks;
      if (shared.options.switch_every > 0 && blocks % shared.options.switch_every == 0 &&
          !stop_sent) {
        v1::SessionCommand sw;
        sw.set_command_id(next_command);
        sw.mutable_switch_prompt()->set_prompt(
            fmt::format("{}, scene {}", shared.options.prompt, next_command));
        switches[next_command++] = Clock::now();
        stream->Write(sw);
      }
    }
    if (live && !stop_sent && Since(r.sent) >= shared.options.live_seconds) {
      v1::SessionCommand stop;
      stop.set_command_id(next_command++);
      stop.mutable_stop();
      stream->Write(stop);
      stop_sent = true;
    }
  }
  r.Finish(stream->Finish(), shared.options.start_buffer_seconds);
  return r.record;
}

void RunOne(Shared& shared, uint64_t index) {
  const ConnectionOptions& server = shared.servers[index % shared.servers.size()];
  // The mix is a repeating sequence of kinds by weight: deterministic for a given index.
  int total = 0;
  for (const auto& [kind, weight] : shared.options.mix) total += weight;
  int pick = static_cast<int>(index % static_cast<uint64_t>(std::max(1, total)));
  std::string kind = "generate";
  for (const auto& [k, weight] : shared.options.mix) {
    if (pick < weight) {
      kind = k;
      break;
    }
    pick -= weight;
  }
  const double started = Since(shared.start);
  ++shared.running;
  SessionRecord record =
      kind == "generate" ? RunGenerate(shared, server) : RunSession(shared, server, kind == "live");
  --shared.running;
  record.server = server.server;
  record.kind = kind;
  record.start = started;
  std::lock_guard lock(shared.mu);
  shared.records.push_back(std::move(record));
}

double CpuSeconds() {
  rusage usage{};
  ::getrusage(RUSAGE_SELF, &usage);
  auto s = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  return s(usage.ru_utime) + s(usage.ru_stime);
}

}  // namespace

int Bench(const ConnectionOptions& connection, const RequestOptions& request,
          const BenchOptions& options) {
  Shared shared{options, request, {}};
  for (const std::string& address : options.servers) {
    ConnectionOptions c = connection;
    c.server = address;
    if (absl::Status s = ResolveServer(&c); !s.ok()) {
      fmt::print(stderr, "longsana: {}\n", std::string(s.message()));
      return kExitUsage;
    }
    shared.servers.push_back(c);
  }
  const double cpu0 = CpuSeconds();
  std::vector<std::thread> threads;
  std::atomic<bool> done{false};
  // A live progress line on a terminal.
  std::thread progress([&] {
    if (options.json || ::isatty(::fileno(stderr)) == 0) return;
    while (!done.load()) {
      size_t finished;
      {
        std::lock_guard lock(shared.mu);
        finished = shared.records.size();
      }
      fmt::print(stderr, "\r\033[Kbench: {:.1f} s, {} running, {} finished", Since(shared.start),
                 shared.running.load(), finished);
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    fmt::print(stderr, "\r\033[K");
  });
  if (options.rate > 0) {
    // Open loop: arrivals at `rate` per second for `duration`, whatever the server does.
    const int64_t total =
        std::max<int64_t>(1, std::llround(options.rate * options.duration_seconds));
    for (int64_t i = 0; i < total; ++i) {
      const auto at = shared.start + std::chrono::duration_cast<Clock::duration>(
                                         std::chrono::duration<double>(i / options.rate));
      std::this_thread::sleep_until(at);
      threads.emplace_back(RunOne, std::ref(shared), static_cast<uint64_t>(i));
    }
  } else {
    // Closed loop: `sessions` at once, each followed by another until `duration` (0: one each).
    for (int w = 0; w < options.sessions; ++w) {
      threads.emplace_back([&shared, &options, w] {
        uint64_t round = 0;
        do {
          RunOne(shared, static_cast<uint64_t>(w) + round * options.sessions);
          ++round;
        } while (Since(shared.start) < options.duration_seconds);
      });
    }
  }
  for (auto& t : threads) t.join();
  done = true;
  progress.join();

  BenchSummaryOptions summary_options;
  summary_options.servers = options.servers;
  summary_options.wall_seconds = Since(shared.start);
  summary_options.client_cpu_seconds = CpuSeconds() - cpu0;
  summary_options.start_buffer = options.start_buffer_seconds;
  const nlohmann::json summary = Summarize(shared.records, summary_options);
  if (!options.chart.empty()) {
    std::ofstream out(options.chart, std::ios::trunc);
    out << ChartSvg(shared.records);
    if (!out) {
      fmt::print(stderr, "longsana: cannot write {}\n", options.chart);
      return kExitIo;
    }
  }
  if (options.json) {
    fmt::print("{}\n", summary.dump(2));
  } else {
    fmt::print("{}", FormatTable(summary));
  }
  return kExitOk;
}

}  // namespace longsana::client
