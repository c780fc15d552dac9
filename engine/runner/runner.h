// Runner: the one thread that plans and executes DiT forwards and owns every session's
// sampler (and so its DiT state). Private to engine/runner.
//
// Each iteration, under the registry lock: admit queued sessions; release ended ones (their
// memory first, then their slot); apply each running session's pending commands to its
// sampler; end sessions whose client has read nothing for the stall budget; pick the ready
// sessions — a paced one is not ready while the block it would start is more than its
// lookahead ahead of its viewer's clock — and plan one batch (Scheduler::Plan, by playback
// deadline: paced sessions first, as-fast-as-possible ones with what is left). Then, outside the
// lock: set up newly admitted sessions (sampler, decoder cache, encoder) and run the batch's
// forward.
//
// Faults: a step is all or nothing (RunSamplerStep stages state commits and advances in two
// phases), so when a batched forward throws — anywhere, even between layers — no session has
// changed; the batch is then retried one session at a time and only the sessions that fail
// again end, with the error's Status. No exception leaves the thread.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "engine/common/device_ops.h"
#include "engine/models/longsana_dit/dit_model.h"
#include "engine/models/wan_vae/wan_vae_decoder.h"
#include "engine/runner/media_pipeline.h"
#include "engine/runner/session_registry.h"

namespace longsana::engine {

struct RunnerOptions {
  int fps = 16;
  std::chrono::milliseconds stall_timeout{10'000};  // 0: no stall budget
  std::function<void()> after_failure;  // a forward threw: check the device
  std::shared_ptr<EngineObserver> observer;  // optional: told about every forward
};

class Runner {
 public:
  Runner(SessionRegistry& registry, const DitModel& dit, const WanVaeDecoder& vae,
         MediaPipeline& media, RunnerOptions options)
      : registry_(registry), dit_(dit), vae_(vae), media_(media), options_(std::move(options)) {}
  ~Runner() { Stop(); }

  void Start();
  // Returns after the forward in progress (set registry.stopping first).
  void Stop();

 private:
  void Loop();
  // A live session with at most one block left unstarted gets one more (up to its live
  // limit), so that it never completes by itself and a switch never needs an extend.
  void GrowLiveLocked(Session& s);
  void ApplyOpsLocked(SessionRegistry::Lock& lock, Session& s);
  bool StalledLocked(SessionRegistry::Lock& lock, Session& s, Clock::time_point now);
  // Applies a prompt switch due at the block the session is about to start. False while
  // that switch's caption is still being encoded: the session waits.
  bool ApplySwitchesLocked(Session& s);
  absl::Status SetUp(Session& s);
  void Execute(const std::vector<std::shared_ptr<Session>>& batch);
  // When the session's current block is due (seconds since epoch_): paced sessions when
  // their viewer reaches it, the others after every paced one.
  double DeadlineLocked(const Session& s, Clock::time_point now) const;
  // Pacing: false while the session is about to start a block more than its lookahead
  // ahead of its viewer's clock (engine/scheduler/pacing.h).
  bool PacedMayRunLocked(const Session& s, Clock::time_point now) const;

  SessionRegistry& registry_;
  const DitModel& dit_;
  const WanVaeDecoder& vae_;
  MediaPipeline& media_;
  const RunnerOptions options_;
  const Clock::time_point epoch_ = Clock::now();
  // The previous forward (runner thread only). Execute queues a forward, then waits for the
  // one before it: the device always has the next forward queued while one runs, and the
  // host stays at most one forward ahead of the device.
  device::Fence previous_forward_;
  std::thread thread_;
};

}  // namespace longsana::engine
