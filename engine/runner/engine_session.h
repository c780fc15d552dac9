// EngineImpl's per-session record and sink wrapper, shared by engine_impl.cc (API side)
// and engine_pipeline.cc (runner and media worker). Private to engine/runner.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "engine/common/str_util.h"
#include "engine/runner/engine_impl.h"

namespace longsana::engine {

namespace runner_internal {

constexpr int kMaxPromptBytes = 16 * 1024;
constexpr int64_t kMaxMediaBacklogBlocks = 2;  // DiT may run this many blocks ahead of media
constexpr auto kIdleWait = std::chrono::milliseconds(20);

inline double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

// Video frames of a block of latent frames [a, b): the first latent frame of a stream gives
// one video frame, every later one four.
inline int64_t FirstVideoFrame(int64_t latent_begin) {
  return latent_begin == 0 ? 0 : 4 * latent_begin - 3;
}
inline int64_t VideoFrames(int64_t latent_begin, int64_t latent_end) {
  return FirstVideoFrame(latent_end) - FirstVideoFrame(latent_begin);
}

inline absl::Status StatusFromTorch(const c10::Error& e, std::string_view what) {
  std::string msg = e.what_without_backtrace();
  if (msg.find("out of memory") != std::string::npos) {
    return absl::ResourceExhaustedError(StrCat(what, ": out of device memory"));
  }
  return absl::InternalError(StrCat(what, ": ", msg));
}

}  // namespace runner_internal

// Serialises one session's sink calls and enforces a single terminal event.
class EngineImpl::SerializedSink {
 public:
  explicit SerializedSink(std::shared_ptr<ChunkSink> sink) : sink_(std::move(sink)) {}

  void Queued(int position, double eta) {
    std::lock_guard lock(mu_);
    if (!terminal_) sink_->OnQueued(position, eta);
  }
  void Started() {
    std::lock_guard lock(mu_);
    if (!terminal_) sink_->OnStarted();
  }
  void Progress(int64_t block, int step, int num_steps) {
    std::lock_guard lock(mu_);
    if (!terminal_) sink_->OnProgress(block, step, num_steps);
  }
  void Chunk(VideoChunk chunk) {
    std::lock_guard lock(mu_);
    if (!terminal_) sink_->OnChunk(std::move(chunk));
  }
  void Ack(const CommandAck& ack) {
    std::lock_guard lock(mu_);
    if (!terminal_) sink_->OnCommandAck(ack);
  }
  void Complete(const CompletionStats& stats) {
    std::lock_guard lock(mu_);
    if (terminal_) return;
    terminal_ = true;
    sink_->OnCompleted(stats);
  }
  void Fail(const absl::Status& status) {
    std::lock_guard lock(mu_);
    if (terminal_) return;
    terminal_ = true;
    sink_->OnFailed(status);
  }
  bool Congested() const { return sink_->Congested(); }

 private:
  std::mutex mu_;
  std::shared_ptr<ChunkSink> sink_;
  bool terminal_ = false;
};

struct PendingSwitch {
  std::string prompt;
  uint64_t generation = 0;  // a later switch for the same block supersedes this one
  bool ready = false;       // `caption` encoded (by the text worker)
  Caption caption;
  PromptSwitchMode mode = PromptSwitchMode::kImmediate;
};

struct EngineImpl::Session {
  enum class Stage {
    kQueued,    // waiting for a slot
    kAdmitted,  // has a slot; the runner allocates its sampler, VAE cache and encoder
    kRunning,   // generating
    kFinished,
  };

  SessionId id = 0;
  SessionSpec spec;
  SessionInfo info;
  std::shared_ptr<SerializedSink> sink;
  Caption caption;            // written by the text worker before captions_ready
  int64_t slot_bytes = 0;

  // Guarded by EngineImpl::mu_.
  Stage stage = Stage::kQueued;
  bool visible = false;        // Submit returned: events may flow
  bool captions_ready = false; // the prompt (and timeline prompts) are encoded
  bool in_flight = false;      // in the forward being executed
  bool dit_done = false;
  bool cancelled = false;
  absl::Status cancel_reason;
  int last_queue_position = 0;
  int64_t next_unstarted_block = 0;  // first block no forward has been issued for
  int64_t media_backlog = 0;         // blocks finished by the DiT, not yet encoded
  int64_t blocks_encoded = 0;
  std::map<int64_t, PendingSwitch> switches;  // block -> caption to use from that block on
  // Extend/Stop change the sampler's block list; the runner applies them between forwards.
  // The sampler is created with the request's length and then replays these in order, so
  // its blocks always equal latent_bounds.
  std::vector<std::function<void(SamplerSession&)>> pending_ops;
  std::vector<int64_t> latent_bounds;  // block boundaries in latent frames, as commanded
  std::vector<double> block_dit_seconds;
  Clock::time_point submit_time, start_time;

  // Runner thread only (created by SetUp).
  std::unique_ptr<SamplerSession> sampler;
  // Media worker only.
  std::unique_ptr<WanVaeCache> vae_cache;
  std::unique_ptr<Fmp4Encoder> encoder;
  bool init_sent = false;
  double first_chunk_seconds = -1;
  std::vector<BlockTiming> timings;
};

}  // namespace longsana::engine
