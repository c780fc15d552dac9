// A test fake of engine::Engine (tests only): no model, but the real session life cycle.
//
// Sessions are admitted into `max_sessions` slots or queued (up to `queue_size`, beyond:
// ResourceExhausted). One loop thread advances every running, non-congested session by one
// "forward" per iteration (a batched step taking `step_time`); a block is num_steps denoising
// steps plus one cache pass, after which its frames (the deterministic moving test pattern of
// engine/media, offset by the seed) are encoded to a real fMP4 fragment by the real
// Fmp4Encoder and handed to the sink (the init segment first). Block partition, frame counts
// and the sink call order follow engine/api/engine.h. Cancel drops a session at the next step
// boundary and frees its slot; commands take effect at the next block boundary and are
// acknowledged (refusals too, in order) through the sink; Drain waits, then cancels with
// Unavailable. A session whose sink is Congested() is skipped (and counted).
//
// Introspection (Record) lets tests check which prompt each block used and how often a
// session was paused. Thread-safe. Sink calls are made with the engine lock held, which
// serializes them per session as the contract requires.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "engine/api/engine.h"

namespace longsana::testing {

struct FakeEngineOptions {
  int max_sessions = 2;
  int queue_size = 2;
  int max_num_frames = 961;
  int block_latent_frames = 10;
  int fps = 16;
  int min_dimension = 32;
  int max_dimension = 256;
  int default_width = 64;
  int default_height = 64;
  // A model-dependent limit only the engine knows (to test that its InvalidArgument passes
  // through the server): width * height at most this.
  int64_t max_pixels = 256 * 256;
  std::chrono::microseconds step_time{2000};
};

class FakeEngine final : public engine::Engine {
 public:
  explicit FakeEngine(FakeEngineOptions options = {});
  ~FakeEngine() override;

  absl::Status ValidateSpec(const engine::SessionSpec& spec) const override;
  absl::StatusOr<engine::SessionInfo> Submit(engine::SessionSpec spec,
                                             std::shared_ptr<engine::ChunkSink> sink) override;
  void Cancel(engine::SessionId id, const absl::Status& reason) override;
  absl::StatusOr<engine::CommandAck> Command(
      engine::SessionId id, uint64_t command_id,
      absl::StatusOr<engine::SessionCommand> command) override;
  engine::EngineStats Stats() const override;
  engine::ModelInfo Info() const override;
  bool Healthy() const override;
  void Drain(std::chrono::milliseconds timeout) override;

  // --- test controls ---
  void SetHealthy(bool healthy);
  // While paused no session advances (commands and cancels are still handled).
  void SetPaused(bool paused);

  struct Record {
    engine::SessionSpec spec;
    engine::SessionInfo info;
    std::vector<std::string> block_prompts;  // prompt in effect when each block started
    int64_t blocks_done = 0;
    int64_t forwards = 0;
    int64_t congested_iterations = 0;
    bool admitted = false;
    bool ended = false;
    absl::Status end_status;  // OK when completed
  };
  std::optional<Record> GetRecord(engine::SessionId id) const;
  std::vector<engine::SessionId> SessionIds() const;
  // Waits until `id` has ended or `timeout` passed; true when it ended.
  bool WaitEnded(engine::SessionId id, std::chrono::milliseconds timeout) const;

 private:
  struct Session;
  void Loop();
  // Advances `s` by one forward; true when it ended (completed).
  bool StepLocked(Session& s);
  void EndLocked(Session& s, const absl::Status& status);
  void AdmitLocked();
  void RemoveEndedLocked();
  Session* FindLocked(engine::SessionId id);
  absl::StatusOr<engine::CommandAck> SwitchPromptLocked(Session& s, uint64_t command_id,
                                                        engine::SwitchPromptCommand c);
  absl::StatusOr<engine::CommandAck> ExtendLocked(Session& s, uint64_t command_id,
                                                  engine::ExtendCommand c);
  absl::StatusOr<engine::CommandAck> StopLocked(Session& s, uint64_t command_id);

  const FakeEngineOptions options_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::map<engine::SessionId, std::unique_ptr<Session>> sessions_;  // queued + running
  std::deque<engine::SessionId> queue_;
  std::vector<engine::SessionId> running_;
  std::map<engine::SessionId, Record> records_;
  engine::SessionId next_id_ = 1;
  bool healthy_ = true;
  bool paused_ = false;
  bool draining_ = false;
  bool stop_ = false;
  engine::EngineStats counters_;
  std::thread loop_;
};

}  // namespace longsana::testing
