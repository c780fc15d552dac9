// The record of one generation session, shared by the registry, the runner, the media
// pipeline and the text worker. Private to engine/runner.
//
// Ownership, one owner per field group (stated at each group):
//  - immutable after Submit;
//  - guarded by the registry lock (SessionRegistry::Lock): the stage and everything the
//    API threads, the runner and the workers coordinate on;
//  - runner thread only: the sampler (the DiT state inside it);
//  - media pipeline only: the decoder cache and the encoder, used by the one worker that
//    holds `media_busy`; created by the runner at set-up, before the first media job.
// Resources are released only once the session has ended and neither the runner nor a
// media worker holds them; the slot is freed after that (SessionRegistry::Release).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "engine/api/engine.h"
#include "engine/api/log_tag.h"
#include "engine/common/device_ops.h"
#include "engine/media/fmp4_encoder.h"
#include "engine/models/wan_vae/wan_vae_decoder.h"
#include "engine/runner/session_events.h"
#include "engine/sampler/longlive_sampler.h"
#include "engine/scheduler/pacing.h"
#include "engine/text/text_encoder.h"

namespace longsana::engine {

using Clock = std::chrono::steady_clock;

inline double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Video frames of latent frames [0, latent_end): the first latent frame gives one video
// frame, every later one four.
inline int64_t FirstVideoFrame(int64_t latent_begin) {
  return latent_begin == 0 ? 0 : 4 * latent_begin - 3;
}

// Changes to the sampler's block list, applied by the runner between forwards, in command
// order (the bookkeeping in Session::latent_bounds already shows them).
struct ExtendOp {
  int64_t latent_frames = 0;
};
struct StopAfterOp {
  int64_t last_block = 0;
};
using SamplerOp = std::variant<ExtendOp, StopAfterOp>;

// A caption to use from block `block` on.
struct PendingSwitch {
  std::string prompt;
  uint64_t generation = 0;  // a later switch for the same block supersedes this one
  bool ready = false;       // `caption` encoded by the text worker
  Caption caption;
  PromptSwitchMode mode = PromptSwitchMode::kImmediate;
  int transition_blocks = 0;
  // A switch_prompt command (0 for the request's timeline): when it arrived and where the
  // viewer's clock stood then, for its switch-to-visible latency.
  uint64_t command_id = 0;
  Clock::time_point received{};
  double position_at_receipt = 0;
};

// A transition_blocks blend in progress (SwitchPromptCommand).
struct CaptionTransition {
  Caption from, to;
  int64_t first_block = 0;
  int blocks = 0;
  uint64_t command_id = 0;
};

// The prompt a block was made with, for its chunk (VideoChunk::prompt_command_id).
struct BlockPrompt {
  uint64_t command_id = 0;
  double weight = 1;
};

// The first block of a switch_prompt command, for its switch-to-visible report.
struct SwitchOrigin {
  uint64_t command_id = 0;
  Clock::time_point received{};
  double position_at_receipt = 0;
};

// One finished block for the media pipeline.
struct MediaJob {
  int64_t block = 0;
  at::Tensor latent;    // [C, F, h, w], computed on the runner's stream
  device::Fence ready;  // the runner's stream has computed `latent` here
  double dit_seconds = 0;
  double dit_share_seconds = 0;  // this session's share of the batched forwards
};

struct Session {
  enum class Stage {
    kQueued,    // waiting for a slot
    kAdmitted,  // has a slot; waits for its captions, then the runner sets it up
    kRunning,   // generating
    kEnded,     // terminal event sent; resources not yet released
    kReleased,  // resources and slot freed, forgotten by the registry
  };

  // --- Immutable after Submit.
  SessionId id = 0;
  std::string log_tag;  // "[session=… tenant=… request_id=…]", engine/api/log_tag.h
  SessionSpec spec;  // validated, defaults resolved (seed, timesteps)
  SamplerOptions sampler_options;
  EncoderSettings encoder_settings;
  int64_t slot_bytes = 0;
  std::shared_ptr<SessionEvents> events;
  Clock::time_point submit_time;
  // Pacing: seconds of video generation may run ahead of the viewer; < 0: as fast as possible.
  double lookahead_seconds = -1;
  double cost = 1;  // relative compute per block (SessionTicket::cost)

  // --- Guarded by the registry lock.
  Stage stage = Stage::kQueued;
  SessionInfo info;                    // lengths as commanded so far
  std::vector<int64_t> latent_bounds;  // block boundaries in latent frames, as commanded
  int last_queue_position = 0;
  Clock::time_point start_time;
  // Text: the prompt and timeline captions, then at most one switch request at a time
  // (a newer switch replaces an older one not yet taken: coalescing).
  bool captions_ready = false;
  Caption caption;
  bool text_listed = false;  // in the text worker's queue
  bool text_initial_taken = false;
  std::optional<std::pair<int64_t, uint64_t>> text_switch;  // (block, generation) to encode
  std::map<int64_t, PendingSwitch> switches;                // block -> caption from there on
  // Commands.
  uint64_t last_command_id = 0;  // command ids must increase
  bool stopped = false;          // an accepted stop: no commands after it
  std::deque<SamplerOp> pending_ops;
  int64_t next_unstarted_block = 0;  // first block no forward has been issued for
  // Live sessions: the longest the video may grow (latent frames), and whether it got there.
  int64_t live_limit_latent_frames = 0;
  bool live_limit_reached = false;
  // Pacing: the viewer's playback clock (media pipeline: Delivered; commands: Report).
  PlaybackClock clock;
  // Per-block prompt (set by the runner when the block's caption is chosen, taken by the
  // media pipeline for its chunk) and the first blocks of switch commands.
  std::map<int64_t, BlockPrompt> block_prompts;
  std::map<int64_t, SwitchOrigin> switch_origins;
  // Time budget: the measured share of real time this session's blocks take (< 0: not yet).
  double load = -1;
  // Runner coordination.
  bool in_flight = false;  // in the runner's hands outside the lock (set-up or a forward)
  bool dit_done = false;
  std::optional<Clock::time_point> congested_since;
  std::vector<double> block_dit_seconds;
  std::vector<double> block_dit_share;  // per block: forward seconds / batch size
  // Media coordination.
  std::deque<MediaJob> media_queue;
  bool media_listed = false;  // in the pipeline's ready list
  bool media_busy = false;    // a worker is decoding / encoding one of its blocks
  int64_t blocks_encoded = 0;
  // Set when the session ends: a decode in progress stops at its next latent frame.
  std::atomic<bool> abort_decode{false};

  // --- Runner thread only.
  std::unique_ptr<SamplerSession> sampler;
  Caption active_caption;  // the caption of the latest block (the target of a transition)
  BlockPrompt active_prompt;
  std::optional<CaptionTransition> transition;
  int64_t caption_block = -1;  // the block whose caption was chosen last

  // --- Media pipeline only (the worker holding media_busy).
  std::unique_ptr<WanVaeCache> vae_cache;
  std::unique_ptr<Fmp4Encoder> encoder;
  bool init_sent = false;
  int64_t next_sequence = 1;  // of the next fragment (0 is the init segment)
  double first_chunk_seconds = -1;
  std::vector<BlockTiming> timings;

  int64_t num_blocks() const { return static_cast<int64_t>(latent_bounds.size()) - 1; }
  // Registry lock held: latent_bounds grown by `latent_frames` (in blocks of the sampler's
  // block size) and info's lengths updated. The caller queues the matching ExtendOp.
  void AppendLatentFrames(int64_t latent_frames) {
    const int64_t target = latent_bounds.back() + latent_frames;
    while (latent_bounds.back() < target) {
      latent_bounds.push_back(std::min(target, latent_bounds.back() + sampler_options.block_frames));
    }
    RefreshLengths();
  }
  // Registry lock held: info.latent_frames / num_frames / num_blocks / block_first_frames
  // from latent_bounds.
  void RefreshLengths();
  bool ended() const { return stage == Stage::kEnded || stage == Stage::kReleased; }
  // Registry lock held: where block b starts in the video, in seconds.
  double BlockStartSeconds(int64_t block, int fps) const {
    const size_t b = static_cast<size_t>(std::clamp<int64_t>(block, 0, num_blocks()));
    return static_cast<double>(FirstVideoFrame(latent_bounds[b])) / fps;
  }
};

inline void Session::RefreshLengths() {
  info.latent_frames = latent_bounds.back();
  info.num_frames = static_cast<int>(FirstVideoFrame(info.latent_frames));
  info.num_blocks = num_blocks();
  info.block_first_frames.clear();
  for (int64_t b = 0; b < info.num_blocks; ++b) {
    info.block_first_frames.push_back(FirstVideoFrame(latent_bounds[b]));
  }
}

}  // namespace longsana::engine
