#include "server/server_main.h"

#include <fmt/format.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "server/server.h"

ABSL_FLAG(std::string, model_dir, "", "Model directory (diffusers layout). Required.");
ABSL_FLAG(std::string, listen, "0.0.0.0:50051",
          "host:port to listen on; port 0 picks a free port (printed on stdout).");
ABSL_FLAG(std::string, device, "cpu", "cpu | cuda");
ABSL_FLAG(int, max_sessions, 4, "Sessions generating at once (state slots).");
ABSL_FLAG(std::string, memory_budget, "0",
          "Bytes of session state slots, with an optional k/M/G/T suffix (e.g. 8G); 0: only "
          "--max_sessions limits.");
ABSL_FLAG(int, queue_size, 16, "Sessions that may wait for a slot; beyond: RESOURCE_EXHAUSTED.");
ABSL_FLAG(double, drain_timeout, 30.0,
          "Seconds running sessions get to finish after SIGTERM before they end with "
          "UNAVAILABLE.");
ABSL_FLAG(double, shutdown_grace, 5.0,
          "Seconds open streams get to flush after the drain before they are cancelled.");
ABSL_FLAG(int, threads, 0, "CPU intra-op threads; 0: one per core.");
ABSL_FLAG(int, caption_len, 300, "Caption tokens per prompt (BOS + L-1).");
ABSL_FLAG(int, max_frames, 961, "Most video frames per session (1 + 4k), extensions included.");
ABSL_FLAG(int, max_batch, 8, "Most work items per DiT forward.");
ABSL_FLAG(int, max_dimension, 1280, "Largest width/height in pixels (multiple of 16).");
ABSL_FLAG(int, min_dimension, 32, "Smallest width/height in pixels (multiple of 16).");
ABSL_FLAG(int, encoder_threads, 0, "x264 threads per session; 0: automatic.");
ABSL_FLAG(int, outbox_chunks, 4,
          "Undelivered video chunks per stream at which the session pauses (slow reader).");
ABSL_FLAG(bool, text_softcap, false, "Gemma-2 attention soft-cap (binding decision 1).");
ABSL_FLAG(bool, exact_timesteps, false, "Exact integer timesteps (binding decision 2).");
ABSL_FLAG(std::string, log_level, "info", "trace | debug | info | warn | error | off");

namespace longsana::server {
namespace {

std::chrono::milliseconds Seconds(double s) {
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(s * 1000.0)));
}

absl::Status Bad(std::string_view flag, std::string_view what) {
  return absl::InvalidArgumentError(fmt::format("--{}: {}", flag, what));
}

// What the main thread waits for: the models loaded (or failed), or a signal.
struct MainEvents {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<absl::StatusOr<std::unique_ptr<engine::Engine>>> loaded;
  int signal = 0;

  void PostLoaded(absl::StatusOr<std::unique_ptr<engine::Engine>> result) {
    {
      std::lock_guard lock(mu);
      loaded = std::move(result);
    }
    cv.notify_all();
  }
  void PostSignal(int sig) {
    {
      std::lock_guard lock(mu);
      if (signal == 0) signal = sig;
    }
    cv.notify_all();
  }
};

int g_signal_pipe[2] = {-1, -1};

void OnSignal(int sig) {
  const unsigned char byte = static_cast<unsigned char>(sig);
  // Async-signal-safe; a full pipe (a burst of signals) loses nothing that matters.
  [[maybe_unused]] const ssize_t n = write(g_signal_pipe[1], &byte, 1);
}

spdlog::level::level_enum ToSpdlog(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return spdlog::level::trace;
    case LogLevel::kDebug:
      return spdlog::level::debug;
    case LogLevel::kInfo:
      return spdlog::level::info;
    case LogLevel::kWarn:
      return spdlog::level::warn;
    case LogLevel::kError:
      return spdlog::level::err;
    case LogLevel::kOff:
      return spdlog::level::off;
  }
  return spdlog::level::info;
}

}  // namespace

void NormalizeFlagDashes(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    char* arg = argv[i];
    if (std::strcmp(arg, "--") == 0) break;
    if (arg[0] != '-') continue;
    char* name = arg + (arg[1] == '-' ? 2 : 1);
    for (char* p = name; *p != '\0' && *p != '='; ++p) {
      if (*p == '-') *p = '_';
    }
  }
}

absl::StatusOr<Config> ConfigFromFlags() {
  Config c;
  c.server.listen = absl::GetFlag(FLAGS_listen);
  const double drain = absl::GetFlag(FLAGS_drain_timeout);
  if (!std::isfinite(drain) || drain < 0 || drain > 86400) {
    return Bad("drain_timeout", "must be in [0, 86400] seconds");
  }
  c.server.drain_timeout = Seconds(drain);
  const double grace = absl::GetFlag(FLAGS_shutdown_grace);
  if (!std::isfinite(grace) || grace < 0 || grace > 3600) {
    return Bad("shutdown_grace", "must be in [0, 3600] seconds");
  }
  c.server.shutdown_grace = Seconds(grace);
  c.server.outbox_chunks = absl::GetFlag(FLAGS_outbox_chunks);
  auto level = ParseLogLevel("--log_level", absl::GetFlag(FLAGS_log_level));
  if (!level.ok()) return level.status();
  c.server.log_level = *level;

  c.engine.model_dir = absl::GetFlag(FLAGS_model_dir);
  if (c.engine.model_dir.empty()) return Bad("model_dir", "is required");
  auto device = ParseDevice("--device", absl::GetFlag(FLAGS_device));
  if (!device.ok()) return device.status();
  c.engine.device = *device;
  c.engine.threads = absl::GetFlag(FLAGS_threads);
  c.engine.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  auto budget = ParseByteSize("--memory_budget", absl::GetFlag(FLAGS_memory_budget));
  if (!budget.ok()) return budget.status();
  c.engine.memory_budget_bytes = *budget;
  c.engine.queue_size = absl::GetFlag(FLAGS_queue_size);
  c.engine.max_batch = absl::GetFlag(FLAGS_max_batch);
  c.engine.max_num_frames = absl::GetFlag(FLAGS_max_frames);
  c.engine.min_dimension = absl::GetFlag(FLAGS_min_dimension);
  c.engine.max_dimension = absl::GetFlag(FLAGS_max_dimension);
  c.engine.caption_len = absl::GetFlag(FLAGS_caption_len);
  c.engine.text_softcap = absl::GetFlag(FLAGS_text_softcap);
  c.engine.exact_timesteps = absl::GetFlag(FLAGS_exact_timesteps);
  c.engine.encoder_threads = absl::GetFlag(FLAGS_encoder_threads);

  if (auto s = c.Validate(); !s.ok()) {
    // Config fields are named like the flags; say so in the flag's spelling.
    return absl::InvalidArgumentError(fmt::format("invalid flags: {}", std::string(s.message())));
  }
  return c;
}

int ServerMain(int argc, char** argv, const EngineFactory& create_engine) {
  // SIGTERM/SIGINT: a handler that writes the signal number into a pipe, read by a watcher
  // thread. (Blocking the signals and sigwait() would not do: libraries may start threads
  // before main, and a signal delivered to one of those would kill the process.)
  if (pipe(g_signal_pipe) != 0) {
    std::fprintf(stderr, "longsana-server: pipe: %s\n", std::strerror(errno));
    return 1;
  }
  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGINT, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);

  absl::SetProgramUsageMessage(
      "longsana-server --model_dir DIR [--listen HOST:PORT] [--device cpu|cuda] ...\n"
      "Serves LongSANA video generation over gRPC (package longsana.v1). Flags may be "
      "spelled with dashes or underscores.");
  NormalizeFlagDashes(argc, argv);
  const auto positional = absl::ParseCommandLine(argc, argv);
  if (positional.size() > 1) {
    std::fprintf(stderr, "longsana-server: unexpected argument '%s' (see --help)\n", positional[1]);
    return 2;
  }
  auto config = ConfigFromFlags();
  if (!config.ok()) {
    std::fprintf(stderr, "longsana-server: %s\n", std::string(config.status().message()).c_str());
    return 2;
  }

  auto logger = spdlog::stderr_color_mt("longsana-server");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(ToSpdlog(config->server.log_level));
  spdlog::flush_on(spdlog::level::info);

  // Shared with the detached signal watcher, which may outlive this function.
  auto events = std::make_shared<MainEvents>();
  std::thread([events] {
    unsigned char sig = 0;
    while (true) {
      const ssize_t n = read(g_signal_pipe[0], &sig, 1);
      if (n == 1) events->PostSignal(sig);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
    }
  }).detach();

  auto server = Server::Start(config->server);
  if (!server.ok()) {
    spdlog::error("{}", server.status().ToString());
    return 1;
  }
  std::printf("listening on %s\n", (*server)->address().c_str());
  std::fflush(stdout);

  spdlog::info(
      "loading {} on {} (max {} sessions, queue {}, max batch {}, max {} frames, "
      "caption {} tokens)",
      config->engine.model_dir, config->engine.device == engine::DeviceKind::kCuda ? "cuda" : "cpu",
      config->engine.max_sessions, config->engine.queue_size, config->engine.max_batch,
      config->engine.max_num_frames, config->engine.caption_len);
  const auto load_start = std::chrono::steady_clock::now();
  std::thread loader([events, &create_engine, engine_config = config->engine] {
    events->PostLoaded(create_engine(engine_config));
  });

  int exit_code = 0;
  bool loaded = false;
  while (true) {
    std::unique_lock lock(events->mu);
    events->cv.wait(lock,
                    [&] { return events->signal != 0 || (!loaded && events->loaded.has_value()); });
    if (events->signal != 0) {
      const int sig = events->signal;
      lock.unlock();
      spdlog::info("received {}: draining (timeout {:.1f} s)",
                   sig == SIGTERM ? "SIGTERM" : "SIGINT",
                   std::chrono::duration<double>(config->server.drain_timeout).count());
      (*server)->Drain(config->server.drain_timeout);
      (*server)->Shutdown(config->server.shutdown_grace);
      exit_code = 0;
      break;
    }
    auto result = std::move(*events->loaded);
    lock.unlock();
    loaded = true;
    if (!result.ok()) {
      spdlog::error("loading the models failed: {}", result.status().ToString());
      (*server)->SetLoadFailed(result.status());
      (*server)->Shutdown(std::chrono::milliseconds(0));
      exit_code = 1;
      break;
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
    spdlog::info("models loaded and warmed up in {:.2f} s", seconds);
    (*server)->SetEngine(std::shared_ptr<engine::Engine>(std::move(*result)));
  }
  // A signal during loading waits for the load to end (CreateEngine cannot be interrupted).
  loader.join();
  {
    std::lock_guard lock(events->mu);
    events->loaded.reset();  // an engine loaded after the signal is released here
  }
  server->reset();
  spdlog::info("exit {}", exit_code);
  return exit_code;
}

}  // namespace longsana::server
