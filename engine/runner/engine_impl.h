// The Engine implementation: the models resident on one device, and three parts with one
// owner each (see their headers):
//  - SessionRegistry: ids, stages, slots, and the one lock everything shares;
//  - Runner: the only thread that touches DiT state; plans and runs batched forwards;
//  - MediaPipeline: decode + encode of finished blocks on a pool of workers;
// plus the TextWorker that encodes prompts. This class is the facade over them: it validates
// requests and commands (API threads, under the registry lock only for bookkeeping) and
// turns them into session records and typed sampler operations. It never calls a sink
// while holding the lock (SessionRegistry::Lock flushes after unlocking).
#pragma once

#include <atomic>
#include <memory>

#include "engine/api/engine.h"
#include "engine/models/longsana_dit/dit_model.h"
#include "engine/models/model_directory.h"
#include "engine/models/wan_vae/wan_vae_decoder.h"
#include "engine/runner/media_pipeline.h"
#include "engine/runner/runner.h"
#include "engine/runner/session_registry.h"
#include "engine/runner/text_worker.h"
#include "engine/text/text_encoder.h"

namespace longsana::engine {

class EngineImpl final : public Engine {
 public:
  // Loads the models and runs the warm-up (see CreateEngine). Never throws: a failure to
  // load (a bad checkpoint, out of memory) is a Status.
  static absl::StatusOr<std::unique_ptr<EngineImpl>> Create(const EngineConfig& config);
  // Stops the threads (after the forward, decode step and encode in progress) and ends
  // what is left with Unavailable.
  ~EngineImpl() override;

  absl::Status ValidateSpec(const SessionSpec& spec) const override;
  absl::StatusOr<SessionInfo> Submit(SessionSpec spec, std::shared_ptr<ChunkSink> sink) override;
  void Cancel(SessionId id, const absl::Status& reason) override;
  absl::StatusOr<CommandAck> Command(SessionId id, uint64_t command_id,
                                     absl::StatusOr<SessionCommand> command) override;
  EngineStats Stats() const override;
  ModelInfo Info() const override;
  bool Healthy() const override { return healthy_.load(); }
  void Drain(std::chrono::milliseconds timeout) override;

  // Bytes reserved for one session of `spec` (DiT state + VAE cache + captions), computed
  // without allocating.
  absl::StatusOr<int64_t> SlotBytes(const SessionSpec& spec) const;

 private:
  explicit EngineImpl(const EngineConfig& config);
  absl::Status Load();
  absl::Status WarmUp();
  void Start();
  void MarkUnhealthyIfDeviceBroken();

  SamplerOptions SamplerOptionsFor(const SessionSpec& spec) const;
  EncoderSettings EncoderSettingsFor(const SessionSpec& spec) const;

  // Commands, under the lock; each returns the ack or the refusal.
  absl::StatusOr<CommandAck> SwitchPromptLocked(SessionRegistry::Lock& lock,
                                                const std::shared_ptr<Session>& s,
                                                uint64_t command_id, SwitchPromptCommand command);
  absl::StatusOr<CommandAck> ExtendLocked(Session& s, const ExtendCommand& command);
  absl::StatusOr<CommandAck> StopLocked(Session& s);
  absl::StatusOr<CommandAck> PositionLocked(Session& s, const PositionCommand& command);
  // A block's relative compute (SessionTicket::cost): tokens per latent frame x steps.
  double BlockCost(const SessionSpec& spec) const;

  EngineConfig config_;
  // What WarmUp ran (ModelInfo reports it).
  int warmup_width_ = 0, warmup_height_ = 0;
  double warmup_seconds_ = 0;
  int live_limit_frames_ = 0;  // a live session's longest video: max_live_seconds and RoPE
  at::Device device_;
  ModelDirectory dir_;
  std::unique_ptr<DitModel> dit_;
  std::unique_ptr<TextEncoder> text_;
  std::unique_ptr<WanVaeDecoder> vae_;

  mutable SessionRegistry registry_;
  std::unique_ptr<TextWorker> text_worker_;
  std::unique_ptr<MediaPipeline> media_;
  std::unique_ptr<Runner> runner_;
  int64_t default_slot_bytes_ = 0;  // a default request's slot, for Stats().admissible
  uint64_t seed_counter_ = 0;       // registry lock
  uint64_t switch_generation_ = 0;  // registry lock
  std::atomic<bool> healthy_{true};
};

}  // namespace longsana::engine
