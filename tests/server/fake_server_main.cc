// longsana-server-fake (tests only): the real server program (server/server_main) with the
// FakeEngine behind it, so that the process-level tests (SIGTERM drain, the CLI end to end)
// run without a model. Extra flags: --fake_step_ms (one simulated forward), --fake_load_ms
// (simulated model loading), --fake_load_error (loading fails with this message).
#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "absl/flags/flag.h"
#include "server/server_main.h"
#include "tests/server/fake_engine.h"

ABSL_FLAG(int, fake_step_ms, 20, "Duration of one simulated DiT forward.");
ABSL_FLAG(int, fake_load_ms, 0, "Simulated model loading time.");
ABSL_FLAG(std::string, fake_load_error, "", "If set, loading fails with this message.");

int main(int argc, char** argv) {
  return longsana::server::ServerMain(
      argc, argv,
      [](const longsana::engine::EngineConfig& config)
          -> absl::StatusOr<std::unique_ptr<longsana::engine::Engine>> {
        std::this_thread::sleep_for(std::chrono::milliseconds(absl::GetFlag(FLAGS_fake_load_ms)));
        if (!absl::GetFlag(FLAGS_fake_load_error).empty()) {
          return absl::NotFoundError(absl::GetFlag(FLAGS_fake_load_error));
        }
        longsana::testing::FakeEngineOptions options;
        options.max_sessions = config.max_sessions;
        options.queue_size = config.queue_size;
        options.max_num_frames = config.max_num_frames;
        options.min_dimension = config.min_dimension;
        options.max_dimension = std::min(config.max_dimension, 256);
        options.step_time = std::chrono::milliseconds(absl::GetFlag(FLAGS_fake_step_ms));
        return std::make_unique<longsana::testing::FakeEngine>(options);
      });
}
