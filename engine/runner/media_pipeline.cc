#include "engine/runner/media_pipeline.h"

#include <c10/core/InferenceMode.h>
#include <spdlog/spdlog.h>

#include <optional>
#include <span>

#include "engine/common/device_ops.h"
#include "engine/common/fault_injection.h"
#include "engine/common/str_util.h"
#include "engine/runner/status_from_exception.h"

namespace longsana::engine {
namespace {

// Thrown from the decoder's per-frame hook when the session has ended.
struct DecodeStopped {};

}  // namespace

void MaybeCompleteLocked(SessionRegistry::Lock& lock, Session& s) {
  if (s.stage != Session::Stage::kRunning || !s.dit_done || s.media_busy ||
      !s.media_queue.empty() || s.blocks_encoded != s.num_blocks()) {
    return;
  }
  const double since_start = Seconds(Clock::now() - s.start_time);
  CompletionStats stats;
  stats.frames = s.encoder->frames_encoded();
  stats.blocks = s.blocks_encoded;
  stats.time_to_first_chunk_seconds = s.first_chunk_seconds;
  stats.queue_seconds = Seconds(s.start_time - s.submit_time);
  stats.total_seconds = since_start;
  stats.generation_fps = since_start > 0 ? static_cast<double>(stats.frames) / since_start : 0;
  stats.block_timings = s.timings;
  if (s.live_limit_reached) {
    stats.detail = StrCat("live limit reached: ", stats.frames,
                          " frames (--max-live-seconds, at most the model's RoPE coverage)");
  }
  lock.registry().CompleteLocked(lock, s, std::move(stats));
}

void MediaPipeline::NoteDeliveredLocked(Session& s, VideoChunk& chunk, const BlockTiming& timing,
                                        double dit_share_seconds, Clock::time_point now,
                                        bool last_in_block) {
  const int fps = s.info.fps > 0 ? s.info.fps : 16;
  const double end_seconds = static_cast<double>(chunk.first_frame + chunk.num_frames) / fps;
  s.clock.Delivered(now, end_seconds);
  if (auto it = s.block_prompts.find(chunk.block_index); it != s.block_prompts.end()) {
    chunk.prompt_command_id = it->second.command_id;
    chunk.prompt_weight = it->second.weight;
    if (last_in_block) s.block_prompts.erase(it);
  }
  if (auto it = s.switch_origins.find(chunk.block_index); it != s.switch_origins.end()) {
    chunk.switch_visible =
        VideoChunk::SwitchVisible{it->second.command_id, Seconds(now - it->second.received),
                                  chunk.presentation_seconds - it->second.position_at_receipt};
    s.switch_origins.erase(it);
  }
  if (!last_in_block) return;
  // Time budget: what this block cost against the real time it lasts (the DiT share plus
  // decode and encode), smoothed.
  const double duration = end_seconds - s.BlockStartSeconds(chunk.block_index, fps);
  if (!(duration > 0)) return;
  // On CPU the DiT's intra-op threads and the media workers share the same cores, so the
  // costs add up; on CUDA decodes run on their own streams and encodes on the host, in
  // parallel with the forwards, spread over the workers.
  const double media = timing.decode_seconds + timing.encode_seconds;
  const double cost = dit_share_seconds + (options_.cuda ? media / options_.workers : media);
  const double load = cost / duration;
  s.load = s.load < 0 ? load : 0.7 * s.load + 0.3 * load;
  registry_.scheduler().SetLoad(s.id, s.load);
}

void MediaPipeline::Start() {
  for (int i = 0; i < options_.workers; ++i) threads_.emplace_back([this] { Loop(); });
}

void MediaPipeline::Stop() {
  {
    SessionRegistry::Lock lock(registry_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void MediaPipeline::PushLocked(SessionRegistry::Lock&, const std::shared_ptr<Session>& s,
                               MediaJob job) {
  s->media_queue.push_back(std::move(job));
  if (!s->media_listed && !s->media_busy) {
    s->media_listed = true;
    ready_.push_back(s);
    cv_.notify_one();
  }
}

absl::StatusOr<EncodedFragment> MediaPipeline::DecodeAndEncode(Session& s, MediaJob& job,
                                                               int64_t piece, int64_t pieces,
                                                               BlockTiming& timing) {
  const SessionId id = s.id;
  absl::StatusOr<EncodedFragment> fragment = absl::InternalError("not run");
  try {
    const auto t0 = Clock::now();
    // The latent comes from the runner's stream: this stream waits for it on the device, and
    // the caching allocator keeps its memory from the runner's stream until this stream has
    // read it.
    if (piece == 0) job.ready.WaitOnCurrentStream({job.latent});
    // Decoding a block one latent frame at a time with the same cache gives the same frames
    // (wan_vae_decoder.h), so both fragment layouts carry identical video.
    const at::Tensor latent = pieces == 1 ? job.latent : job.latent.slice(1, piece, piece + 1);
    const int64_t first_latent = pieces == 1 ? 0 : piece;
    const int64_t fault_frame = job.latent.size(1) > 1 ? 1 : 0;
    at::Tensor video =
        vae_.DecodeBlock(latent.unsqueeze(0), s.vae_cache.get(), [&](int64_t latent_frame) {
          if (s.abort_decode.load()) throw DecodeStopped{};
          if (first_latent + latent_frame == fault_frame) {
            TORCH_CHECK(!fault_injection::Armed(fault_injection::kMediaDecode, id),
                        "injected fault in the middle of the VAE decode of session ", id);
          }
        });
    at::Tensor frames = device::ToHost(VideoToUint8Frames(video));  // [F, H, W, 3]
    const auto t1 = Clock::now();
    fragment = s.encoder->EncodeFragment(
        std::span<const uint8_t>(frames.data_ptr<uint8_t>(), frames.numel()),
        static_cast<int>(frames.size(0)), /*starts_block=*/piece == 0);
    timing.decode_seconds += Seconds(t1 - t0);
    timing.encode_seconds += Seconds(Clock::now() - t1);
    if (fragment.ok() && static_cast<int64_t>(fragment->bytes.size()) > options_.max_chunk_bytes) {
      fragment = absl::ResourceExhaustedError(
          StrCat("output: block ", job.block, " encoded to a fragment of ", fragment->bytes.size(),
                 " bytes, more than the server's chunk limit of ", options_.max_chunk_bytes,
                 " bytes (--max-chunk-bytes); lower the bitrate or raise the CRF"));
    }
  } catch (const DecodeStopped&) {
    fragment = absl::CancelledError("decode stopped: the session has ended");
  } catch (...) {
    fragment = StatusFromCurrentException("VAE decode");
    if (options_.after_failure) options_.after_failure();
  }
  return fragment;
}

void MediaPipeline::EmitLocked(SessionRegistry::Lock& lock, Session& s, const MediaJob& job,
                               EncodedFragment fragment, BlockTiming& timing, bool last_in_block) {
  const std::string mime = s.encoder->mime_type();
  if (!s.init_sent) {
    VideoChunk init;
    init.sequence = 0;
    init.block_index = -1;
    init.mime_type = mime;
    init.bytes = s.encoder->init_segment();
    s.events->Chunk(std::move(init));
    s.init_sent = true;
  }
  VideoChunk chunk;
  chunk.sequence = s.next_sequence++;
  chunk.block_index = job.block;
  chunk.first_frame = fragment.first_frame;
  chunk.num_frames = fragment.num_frames;
  chunk.presentation_seconds = fragment.start_seconds;
  chunk.duration_seconds = fragment.duration_seconds;
  chunk.mime_type = mime;
  chunk.keyframe = fragment.keyframe;
  chunk.last_in_block = last_in_block;
  chunk.bytes = std::move(fragment.bytes);
  const auto now = Clock::now();
  const double since_start = Seconds(now - s.start_time);
  if (s.first_chunk_seconds < 0) s.first_chunk_seconds = since_start;
  timing.ready_seconds = since_start;
  if (last_in_block) {
    chunk.timing = timing;
    s.timings.push_back(timing);
  }
  NoteDeliveredLocked(s, chunk, timing, job.dit_share_seconds, now, last_in_block);
  const int frames = chunk.num_frames;
  s.events->Chunk(std::move(chunk));
  lock.Notify(s.events);
  spdlog::debug("{} block {} fragment sent ({} frames, decode {:.3f} s, encode {:.3f} s so far)",
                s.log_tag, job.block, frames, timing.decode_seconds, timing.encode_seconds);
}

void MediaPipeline::Loop() {
  c10::InferenceMode inference;
  // Decode on a stream of its own so it overlaps the runner's forwards on the GPU.
  device::OwnStream stream(vae_.device());
  SessionRegistry::Lock lock(registry_);
  while (true) {
    lock.Sync();
    cv_.wait(lock.raw(), [&] { return stop_ || !ready_.empty(); });
    if (stop_) return;
    std::shared_ptr<Session> s = std::move(ready_.front());
    ready_.pop_front();
    s->media_listed = false;
    if (s->ended() || s->media_queue.empty()) {
      s->media_queue.clear();
      registry_.Wake();  // it may be releasable now
      continue;
    }
    MediaJob job = std::move(s->media_queue.front());
    s->media_queue.pop_front();
    s->media_busy = true;
    // One fragment per block, or (OutputOptions) one per latent frame: the first pixels
    // leave after one latent frame's decode. Either way the block starts with a keyframe.
    const int64_t pieces = s->spec.encode.fragment_per_latent_frame ? job.latent.size(1) : 1;
    lock.Unlock();

    BlockTiming timing;
    timing.block = job.block;
    timing.dit_seconds = job.dit_seconds;
    bool ended = false;
    for (int64_t piece = 0; piece < pieces; ++piece) {
      // --- Outside the lock: only this worker touches s's decoder cache and encoder.
      absl::StatusOr<EncodedFragment> fragment = DecodeAndEncode(*s, job, piece, pieces, timing);
      lock.Relock();
      if (s->ended()) {
        ended = true;
        break;
      }
      if (!fragment.ok()) {
        registry_.EndLocked(lock, *s, fragment.status());
        ended = true;
        break;
      }
      EmitLocked(lock, *s, job, *std::move(fragment), timing, piece + 1 == pieces);
      if (piece + 1 < pieces) lock.Unlock();
    }
    s->media_busy = false;
    registry_.Wake();
    if (ended) continue;
    ++s->blocks_encoded;
    if (!s->media_queue.empty()) {
      s->media_listed = true;
      ready_.push_back(s);
      cv_.notify_one();
    }
    MaybeCompleteLocked(lock, *s);
  }
}

}  // namespace longsana::engine
