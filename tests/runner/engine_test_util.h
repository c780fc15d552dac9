// Shared by the real-engine tests: the tiny checkpoint's config, a small request, and
// typed-command shorthands.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>

#include "engine/api/engine.h"
#include "engine/common/fault_injection.h"
#include "tests/common/testdata.h"

namespace longsana::engine {

inline EngineConfig TinyConfig() {
  EngineConfig c;
  c.model_dir = longsana::testing::TinyModelDir();
  c.caption_len = 24;
  c.max_sessions = 4;
  c.queue_size = 4;
  c.encoder_threads = 1;  // deterministic bytes
  c.seed_base = 1234;
  // Tests hold sessions congested on purpose; only the stall test uses a short budget.
  c.stall_timeout = std::chrono::seconds(300);
  // Renders as fast as it can unless a test is about pacing (engine_pacing_test).
  c.default_pacing = Pacing::kAsFastAsPossible;
  return c;
}

inline SessionSpec Spec(int num_frames = 81, uint64_t seed = 7) {
  SessionSpec s;
  s.prompt = "A red fox runs at dawn";
  s.width = 64;
  s.height = 64;
  s.num_frames = num_frames;
  s.seed = seed;
  return s;
}

inline absl::StatusOr<CommandAck> Switch(Engine& engine, SessionId id, uint64_t command_id,
                                         std::string prompt,
                                         PromptSwitchMode mode = PromptSwitchMode::kImmediate) {
  return engine.Command(id, command_id,
                        SessionCommand(SwitchPromptCommand{std::move(prompt), mode}));
}
inline absl::StatusOr<CommandAck> Extend(Engine& engine, SessionId id, uint64_t command_id,
                                         int num_frames) {
  return engine.Command(id, command_id, SessionCommand(ExtendCommand{num_frames}));
}
inline absl::StatusOr<CommandAck> Stop(Engine& engine, SessionId id, uint64_t command_id) {
  return engine.Command(id, command_id, SessionCommand(StopCommand{}));
}

inline std::unique_ptr<Engine> MakeEngine(EngineConfig config = TinyConfig()) {
  auto engine = CreateEngine(config);
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? std::move(*engine) : nullptr;
}

// Stats once every ended session's memory and slot are released (the runner does it just
// after the terminal event); waits up to 30 s.
inline EngineStats IdleStats(Engine& engine) {
  EngineStats stats = engine.Stats();
  for (int i = 0; i < 3000 && (stats.running > 0 || stats.slot_bytes_in_use > 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
    stats = engine.Stats();
  }
  return stats;
}

// Disarms every fault injection point when a test ends, pass or fail.
struct FaultInjectionReset {
  ~FaultInjectionReset() { fault_injection::Reset(); }
};

}  // namespace longsana::engine
