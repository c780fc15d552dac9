#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <span>

#include "engine/common/fault_injection.h"
#include "engine/common/status_macros.h"
#if LONGSANA_TORCH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif
#include "engine/runner/engine_impl.h"
#include "engine/runner/engine_session.h"

namespace longsana::engine {

using namespace runner_internal;

// ----------------------------------------------------------------------------------------
// Runner

double EngineImpl::DeadlineLocked(const Session& s) const {
  const double block_seconds = 4.0 * SamplerOptions{}.block_frames / config_.fps;
  return Seconds(s.start_time - epoch_) + block_seconds * static_cast<double>(s.sampler->block());
}

void EngineImpl::AdmitLocked(std::vector<Notification>* notes) {
  for (SessionId id : scheduler_.AdmitFromQueue()) {
    if (auto s = FindLocked(id)) s->stage = Session::Stage::kAdmitted;
  }
  QueueUpdatesLocked(notes);
}

void EngineImpl::QueueUpdatesLocked(std::vector<Notification>* notes) {
  const auto queue = scheduler_.queue();
  const int running = std::max(1, scheduler_.running());
  for (size_t i = 0; i < queue.size(); ++i) {
    auto s = FindLocked(queue[i]);
    const int position = static_cast<int>(i) + 1;
    if (!s || !s->visible || s->last_queue_position == position) continue;
    s->last_queue_position = position;
    const double eta = avg_session_seconds_ * std::ceil(static_cast<double>(position) / running);
    notes->push_back([sink = s->sink, position, eta] { sink->Queued(position, eta); });
  }
}

absl::Status EngineImpl::SetUp(Session& s) {
  const SessionSpec& spec = s.spec;
  const SamplerOptions options = SamplerOptionsFor(spec);
  LONGSANA_ASSIGN_OR_RETURN(s.encoder, Fmp4Encoder::Create(EncoderSettingsFor(spec)));
  try {
    LONGSANA_ASSIGN_OR_RETURN(s.vae_cache, vae_->NewCache(spec.height / 8, spec.width / 8));
    s.sampler = std::make_unique<SamplerSession>(
        *dit_, options, (spec.num_frames - 1) / 4 + 1, spec.height / 8, spec.width / 8,
        s.caption.embedding, s.caption.mask, std::make_unique<SeededNoise>(spec.seed),
        spec.interactive);
  } catch (const c10::Error& e) {
    return StatusFromTorch(e, "allocating the session state");
  }
  return absl::OkStatus();
}

bool EngineImpl::ApplySwitchesLocked(Session& s) {
  // A switch for block b applies while b has not started: before its first denoise step or
  // during its pending recache. Applying it before planning keeps the token count right
  // (a recache runs the previous block, which may have another length).
  SamplerSession& sampler = *s.sampler;
  const bool not_started =
      (sampler.phase() == SamplerSession::Phase::kDenoise && sampler.step() == 0) ||
      sampler.phase() == SamplerSession::Phase::kRecache;
  if (!not_started) return true;
  auto it = s.switches.find(sampler.block());
  if (it == s.switches.end()) return true;
  if (!it->second.ready) return false;  // its caption is still being encoded
  sampler.SetCaption(it->second.caption.embedding, it->second.caption.mask);
  if (it->second.mode == PromptSwitchMode::kRecache &&
      sampler.phase() == SamplerSession::Phase::kDenoise) {
    sampler.RequestRecache();
  }
  s.switches.erase(it);
  return true;
}

void EngineImpl::RunnerLoop() {
  while (true) {
    std::vector<std::shared_ptr<Session>> to_set_up;
    std::vector<std::shared_ptr<Session>> batch;
    std::vector<Notification> notes;
    {
      std::unique_lock lock(mu_);
      if (stopping_) return;
      notes.swap(posted_);
      AdmitLocked(&notes);
      std::vector<ReadySession> ready;
      std::vector<MediaJob> finish_checks;
      for (auto& [id, s] : sessions_) {
        if (!s->visible) continue;
        if (s->stage == Session::Stage::kRunning) {
          if (!s->pending_ops.empty()) {
            for (auto& op : s->pending_ops) op(*s->sampler);
            s->pending_ops.clear();
            // A stop can end the DiT's work with nothing left for the media worker to do:
            // let the media worker check completion in order after its pending blocks.
            if (s->sampler->done() && !s->dit_done) {
              s->dit_done = true;
              finish_checks.push_back({s, -1, at::Tensor(), 0.0});
            }
          }
        }
        if (s->stage == Session::Stage::kAdmitted) {
          if (s->captions_ready) to_set_up.push_back(s);
          continue;
        }
        if (s->stage != Session::Stage::kRunning || s->dit_done || s->sampler->done()) continue;
        if (!ApplySwitchesLocked(*s)) continue;
        if (s->media_backlog >= kMaxMediaBacklogBlocks || s->sink->Congested()) continue;
        ready.push_back({s->id, s->sampler->next_token_count(), DeadlineLocked(*s),
                         s->spec.priority});
      }
      media_jobs_.PushAll(std::move(finish_checks));
      if (to_set_up.empty()) {
        StepPlan plan = scheduler_.Plan(ready);
        for (SessionId id : plan.batch) {
          auto s = FindLocked(id);
          s->in_flight = true;
          batch.push_back(s);
        }
        if (batch.empty() && notes.empty()) {
          runner_cv_.wait_for(lock, kIdleWait);
          continue;
        }
        // A denoise step 0 in the batch starts its block: later commands target the next.
        for (auto& s : batch) {
          const SamplerSession& sampler = *s->sampler;
          if (sampler.phase() == SamplerSession::Phase::kDenoise && sampler.step() == 0) {
            s->next_unstarted_block = std::max(s->next_unstarted_block, sampler.block() + 1);
          }
        }
      }
    }
    for (auto& note : notes) note();
    for (auto& s : to_set_up) {
      absl::Status status = SetUp(*s);
      Notification note;
      {
        std::lock_guard lock(mu_);
        if (s->stage == Session::Stage::kFinished) continue;  // cancelled meanwhile
        if (status.ok()) {
          s->stage = Session::Stage::kRunning;
          s->start_time = Clock::now();
          spdlog::info("[session {}] started after {:.2f} s in the queue", s->id,
                       Seconds(s->start_time - s->submit_time));
        } else {
          note = FinishLocked(s, status);
        }
      }
      if (note) {
        note();
      } else {
        s->sink->Started();
      }
    }
    if (!batch.empty()) Execute(batch);
  }
}

void EngineImpl::Execute(std::vector<std::shared_ptr<Session>>& batch) {
  const auto t0 = Clock::now();
  std::vector<SamplerSession*> samplers;
  for (auto& s : batch) samplers.push_back(s->sampler.get());
  struct Before {
    int64_t block;
    int step;
    SamplerSession::Phase phase;
  };
  std::vector<Before> before;
  for (auto* sampler : samplers) before.push_back({sampler->block(), sampler->step(), sampler->phase()});

  // Throws for a batch holding a session whose forward a test made fail.
  auto check_faults = [](std::span<const std::shared_ptr<Session>> sessions) {
    for (const auto& s : sessions) {
      TORCH_CHECK(!fault_injection::Armed(fault_injection::kDitForward, s->id),
                  "injected fault in the DiT forward of session ", s->id);
    }
  };
  std::vector<absl::Status> errors(batch.size());
  try {
    check_faults(batch);
    RunSamplerStep(*dit_, samplers);
  } catch (const c10::Error& batch_error) {
    // Isolation: retry each session alone; only the ones that fail again are failed. A
    // session's state is untouched by a failed forward unless it was committing, in which
    // case the retry recomputes the same contributions.
    spdlog::warn("batched forward of {} sessions failed ({}); retrying one by one", batch.size(),
                 batch_error.what_without_backtrace());
    MarkUnhealthyIfDeviceBroken();
    for (size_t i = 0; i < batch.size(); ++i) {
      try {
        SamplerSession* one[] = {samplers[i]};
        check_faults(std::span(batch).subspan(i, 1));
        RunSamplerStep(*dit_, one);
      } catch (const c10::Error& e) {
        errors[i] = StatusFromTorch(e, "DiT forward");
      }
    }
  }
  const double seconds = Seconds(Clock::now() - t0);

  std::vector<Notification> notes;
  std::vector<MediaJob> jobs;
  {
    std::lock_guard lock(mu_);
    ++counters_.forwards;
    counters_.forward_items += batch.size();
    for (size_t i = 0; i < batch.size(); ++i) {
      auto& s = batch[i];
      s->in_flight = false;
      if (s->stage == Session::Stage::kFinished) continue;
      if (!errors[i].ok()) {
        notes.push_back(FinishLocked(s, errors[i]));
        continue;
      }
      if (s->cancelled) {
        notes.push_back(FinishLocked(s, s->cancel_reason));
        continue;
      }
      SamplerSession& sampler = *s->sampler;
      const int num_steps = static_cast<int>(s->spec.timesteps.size());
      if (static_cast<int64_t>(s->block_dit_seconds.size()) <= before[i].block) {
        s->block_dit_seconds.resize(before[i].block + 1, 0.0);
      }
      s->block_dit_seconds[before[i].block] += seconds;
      if (before[i].phase != SamplerSession::Phase::kRecache) {
        const int step = before[i].phase == SamplerSession::Phase::kCachePass ? num_steps
                                                                               : before[i].step + 1;
        notes.push_back([sink = s->sink, block = before[i].block, step, num_steps] {
          sink->Progress(block, step, num_steps);
        });
      }
      if (auto latent = sampler.TakeFinishedBlock()) {
        ++s->media_backlog;
        jobs.push_back({s, before[i].block, *latent, s->block_dit_seconds[before[i].block]});
      }
      if (sampler.done()) s->dit_done = true;
    }
  }
  for (auto& note : notes) {
    if (note) note();
  }
  if (!jobs.empty()) {
#if LONGSANA_TORCH_CUDA
    // The finished latents must be computed before another stream reads them.
    if (device_.is_cuda()) c10::cuda::getCurrentCUDAStream().synchronize();
#endif
    media_jobs_.PushAll(std::move(jobs));
  }
}

void EngineImpl::MarkUnhealthyIfDeviceBroken() {
  if (!device_.is_cuda()) return;
  try {
    (void)at::ones({1}, at::TensorOptions().device(device_)).sum().item<float>();
  } catch (const c10::Error& e) {
    spdlog::error("device unusable after an error ({}); reporting unhealthy",
                  e.what_without_backtrace());
    healthy_ = false;
  }
}

// ----------------------------------------------------------------------------------------
// Media worker

void EngineImpl::MediaLoop() {
#if LONGSANA_TORCH_CUDA
  // Decode on a stream of its own so it overlaps the runner's forwards on the GPU.
  std::optional<c10::cuda::CUDAStreamGuard> stream_guard;
  if (device_.is_cuda()) {
    stream_guard.emplace(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device_.index()));
  }
#endif
  while (std::optional<MediaJob> job = media_jobs_.Pop()) ProcessMediaJob(*job);
}

void EngineImpl::ProcessMediaJob(MediaJob& job) {
  Session& s = *job.session;
  {
    std::lock_guard lock(mu_);
    if (s.stage == Session::Stage::kFinished) return;  // cancelled or failed meanwhile
  }
  if (!job.latent.defined()) {  // completion check after a stop
    bool complete = false;
    {
      std::lock_guard lock(mu_);
      complete = s.dit_done && s.blocks_encoded == s.info.num_blocks;
    }
    if (complete) CompleteSession(job.session);
    return;
  }
  BlockTiming timing;
  timing.block = job.block;
  timing.dit_seconds = job.dit_seconds;
  absl::StatusOr<EncodedFragment> fragment;
  try {
    const auto t0 = Clock::now();
    TORCH_CHECK(!fault_injection::Armed(fault_injection::kMedia, s.id),
                "injected fault in the VAE decode of session ", s.id);
#if LONGSANA_TORCH_CUDA
    // The latent was allocated on the runner's stream: keep the caching allocator from
    // handing its memory back to that stream while this stream still reads it.
    if (job.latent.is_cuda()) job.latent.record_stream(c10::cuda::getCurrentCUDAStream());
#endif
    at::Tensor video = vae_->DecodeBlock(job.latent.unsqueeze(0), s.vae_cache.get());
    at::Tensor frames = VideoToUint8Frames(video).to(at::kCPU).contiguous();  // [F, H, W, 3]
    const auto t1 = Clock::now();
    fragment = s.encoder->EncodeBlock(
        std::span<const uint8_t>(frames.data_ptr<uint8_t>(), frames.numel()),
        static_cast<int>(frames.size(0)));
    timing.decode_seconds = Seconds(t1 - t0);
    timing.encode_seconds = Seconds(Clock::now() - t1);
  } catch (const c10::Error& e) {
    fragment = StatusFromTorch(e, "VAE decode");
    MarkUnhealthyIfDeviceBroken();
  }

  Notification failure;
  bool complete = false;
  {
    std::lock_guard lock(mu_);
    if (s.stage == Session::Stage::kFinished) return;
    --s.media_backlog;
    if (!fragment.ok()) {
      failure = FinishLocked(job.session, fragment.status());
    } else {
      ++s.blocks_encoded;
      complete = s.dit_done && s.blocks_encoded == s.info.num_blocks;
    }
  }
  runner_cv_.notify_all();
  if (failure) {
    failure();
    return;
  }
  const std::string mime = s.encoder->mime_type();
  if (!s.init_sent) {
    VideoChunk init;
    init.sequence = 0;
    init.block_index = -1;
    init.mime_type = mime;
    init.bytes = s.encoder->init_segment();
    s.sink->Chunk(std::move(init));
    s.init_sent = true;
  }
  VideoChunk chunk;
  chunk.sequence = job.block + 1;
  chunk.block_index = job.block;
  chunk.first_frame = fragment->first_frame;
  chunk.num_frames = fragment->num_frames;
  chunk.presentation_seconds = fragment->start_seconds;
  chunk.duration_seconds = fragment->duration_seconds;
  chunk.mime_type = mime;
  chunk.bytes = std::move(fragment->bytes);
  s.sink->Chunk(std::move(chunk));
  const double since_start = Seconds(Clock::now() - s.start_time);
  if (s.first_chunk_seconds < 0) s.first_chunk_seconds = since_start;
  timing.ready_seconds = since_start;
  s.timings.push_back(timing);
  spdlog::debug("[session {}] block {} sent ({} frames, decode {:.3f} s, encode {:.3f} s)", s.id,
                job.block, fragment->num_frames, timing.decode_seconds, timing.encode_seconds);

  if (complete) CompleteSession(job.session);
}

void EngineImpl::CompleteSession(const std::shared_ptr<Session>& session) {
  Session& s = *session;
  const double since_start = Seconds(Clock::now() - s.start_time);
  CompletionStats stats;
  stats.frames = s.encoder->frames_encoded();
  stats.blocks = s.blocks_encoded;
  stats.time_to_first_chunk_seconds = s.first_chunk_seconds;
  stats.queue_seconds = Seconds(s.start_time - s.submit_time);
  stats.total_seconds = since_start;
  stats.generation_fps = since_start > 0 ? stats.frames / since_start : 0;
  stats.block_timings = s.timings;
  {
    std::lock_guard lock(mu_);
    if (s.stage == Session::Stage::kFinished) return;
    FinishLocked(session, absl::OkStatus());
  }
  spdlog::info("[session {}] finished: {} frames in {:.2f} s ({:.1f} fps), first chunk after {:.2f} s",
               s.id, stats.frames, stats.total_seconds, stats.generation_fps,
               stats.time_to_first_chunk_seconds);
  s.sink->Complete(stats);
  runner_cv_.notify_all();
}

}  // namespace longsana::engine
