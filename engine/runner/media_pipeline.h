// MediaPipeline: VAE decode and fMP4 encode of finished blocks, on a pool of worker threads.
//
// The runner queues each finished block on its session (Session::media_queue). A session
// with work is listed once in the ready list; a worker takes the session, decodes and
// encodes its oldest block with the session's decoder cache and encoder, and lists the
// session again if more blocks wait. So one session's blocks are processed in order, by one
// worker at a time, while different sessions' blocks run in parallel: a costly session
// (a slow preset, a large frame) occupies one worker, not the pipeline. A block goes out as
// one fragment or, when the request asks (EncodeOptions::fragment_per_latent_frame), as one
// fragment per latent frame, each handed over as soon as it is encoded.
//
// A decode stops at its next latent frame once its session has ended (cancel, drain
// timeout, shutdown). A fragment over `max_chunk_bytes` ends its session with
// ResourceExhausted. Failures end only their own session. The ready list is guarded by the
// registry lock. Private to engine/runner.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "engine/models/wan_vae/wan_vae_decoder.h"
#include "engine/runner/session_registry.h"

namespace longsana::engine {

struct MediaPipelineOptions {
  int workers = 1;
  int64_t max_chunk_bytes = 16 << 20;
  bool cuda = false;  // each worker decodes on a CUDA stream of its own
  // Called after a decode threw (the engine checks whether the device still works).
  std::function<void()> after_failure;
};

class MediaPipeline {
 public:
  MediaPipeline(SessionRegistry& registry, const WanVaeDecoder& vae, MediaPipelineOptions options)
      : registry_(registry), vae_(vae), options_(std::move(options)) {}
  ~MediaPipeline() { Stop(); }

  void Start();
  // Decodes in progress stop at their next latent frame only if their session has ended;
  // Stop waits for each worker's current job, then drops what is queued.
  void Stop();

  // Queues a finished block of `s` (runner thread).
  void PushLocked(SessionRegistry::Lock& lock, const std::shared_ptr<Session>& s, MediaJob job);

 private:
  void Loop();
  // Decodes and encodes piece `piece` of `pieces` of a block (the whole block, or one latent
  // frame) into one fragment; adds the seconds it took to `timing`. Outside the lock.
  absl::StatusOr<EncodedFragment> DecodeAndEncode(Session& s, MediaJob& job, int64_t piece,
                                                  int64_t pieces, BlockTiming& timing);
  // Hands one fragment (after the init segment, the first time) to the session's events.
  void EmitLocked(SessionRegistry::Lock& lock, Session& s, const MediaJob& job,
                  EncodedFragment fragment, BlockTiming& timing, bool last_in_block);
  // A fragment is about to go out: the viewer's clock, the chunk's prompt fields and
  // switch-to-visible report, and (at the block's last fragment) the session's measured
  // load for the time budget.
  void NoteDeliveredLocked(Session& s, VideoChunk& chunk, const BlockTiming& timing,
                           double dit_share_seconds, Clock::time_point now, bool last_in_block);

  SessionRegistry& registry_;
  const WanVaeDecoder& vae_;
  const MediaPipelineOptions options_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<Session>> ready_;  // registry lock
  bool stop_ = false;                           // registry lock
  std::vector<std::thread> threads_;
};

// Blocks of `s` handed to the media pipeline and not yet encoded (registry lock).
inline int64_t MediaBacklogLocked(const Session& s) {
  return static_cast<int64_t>(s.media_queue.size()) + (s.media_busy ? 1 : 0);
}

// Completes a running session whose every block has been generated and sent, with its
// CompletionStats (registry lock; reads media-owned fields, so no media job may be busy).
void MaybeCompleteLocked(SessionRegistry::Lock& lock, Session& s);

}  // namespace longsana::engine
