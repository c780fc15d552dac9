// The Engine implementation: models resident on one device, a runner thread that plans and
// executes batched DiT forwards, and a media worker that decodes (VAE) and encodes (fMP4)
// each finished block while the next forwards proceed.
//
// Threads and locks:
//  - API calls (Submit, Cancel, commands, Stats) come from any thread; they take `mu_` only
//    for bookkeeping and never call a sink while holding it.
//  - The runner thread owns every SamplerSession (creation, NextWorkItem, Advance).
//  - The media worker owns every session's VAE cache and encoder.
//  - Sinks are wrapped so calls for one session never overlap and end with one terminal
//    event.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "engine/api/engine.h"
#include "engine/media/fmp4_encoder.h"
#include "engine/models/longsana_dit/dit_model.h"
#include "engine/models/model_directory.h"
#include "engine/models/wan_vae/wan_vae_decoder.h"
#include "engine/runner/work_queue.h"
#include "engine/sampler/longlive_sampler.h"
#include "engine/scheduler/scheduler.h"
#include "engine/text/text_encoder.h"

namespace longsana::engine {

class EngineImpl final : public Engine {
 public:
  // Loads the models and runs the warm-up (see CreateEngine).
  static absl::StatusOr<std::unique_ptr<EngineImpl>> Create(const EngineConfig& config);
  ~EngineImpl() override;

  absl::Status ValidateSpec(const SessionSpec& spec) const override;
  absl::StatusOr<SessionInfo> Submit(SessionSpec spec, std::shared_ptr<ChunkSink> sink) override;
  void Cancel(SessionId id, const absl::Status& reason) override;
  absl::StatusOr<CommandAck> Command(SessionId id, uint64_t command_id,
                                     absl::StatusOr<SessionCommand> command) override;
  absl::StatusOr<CommandAck> SwitchPrompt(SessionId id, uint64_t command_id, std::string prompt,
                                          PromptSwitchMode mode);
  absl::StatusOr<CommandAck> Extend(SessionId id, uint64_t command_id, int num_frames);
  absl::StatusOr<CommandAck> Stop(SessionId id, uint64_t command_id);
  EngineStats Stats() const override;
  ModelInfo Info() const override;
  bool Healthy() const override { return healthy_.load(); }
  void Drain(std::chrono::milliseconds timeout) override;

  // Bytes reserved for one session of `spec` (DiT state + VAE cache + captions), computed
  // without allocating.
  absl::StatusOr<int64_t> SlotBytes(const SessionSpec& spec) const;

 private:
  struct Session;
  class SerializedSink;
  using Clock = std::chrono::steady_clock;
  using Notification = std::function<void()>;

  // Prompt encoding, off the API threads (gRPC callback threads must not wait on Gemma).
  struct TextJob {
    std::shared_ptr<Session> session;
    int64_t block = -1;        // -1: the session's prompt and timeline; else a switch
    uint64_t generation = 0;   // of the switch
    std::string prompt;
  };

  struct MediaJob {
    std::shared_ptr<Session> session;
    int64_t block = 0;
    at::Tensor latent;  // [C, F, h, w]; undefined: only check whether the session is complete
    double dit_seconds = 0;
  };

  explicit EngineImpl(const EngineConfig& config);
  absl::Status Load();
  absl::Status WarmUp();

  SamplerOptions SamplerOptionsFor(const SessionSpec& spec) const;
  EncoderSettings EncoderSettingsFor(const SessionSpec& spec) const;

  void RunnerLoop();
  void TextLoop();
  void ProcessTextJob(const TextJob& job);
  void MediaLoop();
  // Creates a just-admitted session's sampler, VAE cache and encoder (runner thread).
  absl::Status SetUp(Session& s);
  // Runs one planned batch; isolates failures to the sessions that caused them.
  void Execute(std::vector<std::shared_ptr<Session>>& batch);
  void ProcessMediaJob(MediaJob& job);
  // Sends OnCompleted with the session's stats (media worker, after its last chunk).
  void CompleteSession(const std::shared_ptr<Session>& session);
  // Applies a pending prompt switch for the block the session is about to start (runner).
  // False while that switch's caption is still being encoded: the session waits.
  bool ApplySwitchesLocked(Session& s);

  // Under mu_: forgets the session (slot freed), returns the sink notification to send.
  Notification FinishLocked(const std::shared_ptr<Session>& s, const absl::Status& status);
  void AdmitLocked(std::vector<Notification>* notes);
  void QueueUpdatesLocked(std::vector<Notification>* notes);
  std::shared_ptr<Session> FindLocked(SessionId id) const;
  double DeadlineLocked(const Session& s) const;
  void MarkUnhealthyIfDeviceBroken();
  // info's block list and lengths from s.latent_bounds.
  static void RefreshLengthsLocked(Session& s);
  void PostAck(const std::shared_ptr<SerializedSink>& sink, const CommandAck& ack);

  EngineConfig config_;
  at::Device device_;
  ModelDirectory dir_;
  std::unique_ptr<DitModel> dit_;
  std::unique_ptr<TextEncoder> text_;
  std::unique_ptr<WanVaeDecoder> vae_;

  mutable std::mutex mu_;
  std::condition_variable runner_cv_;
  Scheduler scheduler_;
  std::map<SessionId, std::shared_ptr<Session>> sessions_;
  SessionId next_id_ = 1;
  uint64_t seed_counter_ = 0;
  bool stopping_ = false;
  bool draining_ = false;
  EngineStats counters_;
  std::vector<Notification> posted_;  // sink calls the runner makes for API threads
  double avg_session_seconds_ = 0;  // for queue start estimates

  WorkQueue<TextJob> text_jobs_;
  uint64_t switch_generation_ = 0;  // under mu_
  WorkQueue<MediaJob> media_jobs_;

  std::atomic<bool> healthy_{true};
  Clock::time_point epoch_ = Clock::now();
  std::thread runner_;
  std::thread text_worker_;
  std::thread media_;
};

}  // namespace longsana::engine
