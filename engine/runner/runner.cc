#include "engine/runner/runner.h"

#include <c10/core/InferenceMode.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <span>

#include "engine/common/fault_injection.h"
#include "engine/common/str_util.h"
#include "engine/runner/status_from_exception.h"

namespace longsana::engine {
namespace {

constexpr int64_t kMaxMediaBacklogBlocks = 2;  // the DiT may run this many blocks ahead
constexpr auto kIdleWait = std::chrono::milliseconds(20);

// Where a batch member's sampler stood before the forward.
struct Before {
  int64_t block;
  int step;
  SamplerSession::Phase phase;
};

// Throws, after the first layer, for a batch holding a session whose forward a test armed
// to fail (the production path after the throw is the real one).
void CheckFaults(std::span<const std::shared_ptr<Session>> sessions,
                 std::span<const Before> before, int64_t layer) {
  if (layer != 0) return;
  for (size_t i = 0; i < sessions.size(); ++i) {
    const SessionId id = sessions[i]->id;
    const bool fault = fault_injection::Armed(fault_injection::kDitForward, id) ||
                       (before[i].phase == SamplerSession::Phase::kCachePass &&
                        fault_injection::Armed(fault_injection::kDitCachePass, id));
    TORCH_CHECK(!fault, "injected fault after layer 0 of the DiT forward of session ", id);
  }
}

}  // namespace

void Runner::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Runner::Stop() {
  {
    SessionRegistry::Lock lock(registry_);
    registry_.stopping = true;
  }
  registry_.Wake();
  if (thread_.joinable()) thread_.join();
}

double Runner::DeadlineLocked(const Session& s, Clock::time_point now) const {
  const double block_start = s.BlockStartSeconds(s.sampler->block(), options_.fps);
  if (s.lookahead_seconds >= 0) {
    // Paced: the block is due when the viewer reaches its start (never, while paused).
    return Seconds(now - epoch_) + std::min(SecondsUntilDue(s.clock, block_start, now), 1e8);
  }
  // As fast as possible: after every paced session (they are due within their lookahead),
  // among themselves in real-time order from their start.
  constexpr double kAfterPaced = 1e9;
  return kAfterPaced + Seconds(s.start_time - epoch_) + block_start;
}

bool Runner::PacedMayRunLocked(const Session& s, Clock::time_point now) const {
  if (s.lookahead_seconds < 0) return true;
  const SamplerSession& sampler = *s.sampler;
  const bool starts_block =
      (sampler.phase() == SamplerSession::Phase::kDenoise && sampler.step() == 0) ||
      sampler.phase() == SamplerSession::Phase::kRecache;
  if (!starts_block) return true;  // a block in progress is finished
  return MayStartBlock(s.BlockStartSeconds(sampler.block(), options_.fps), s.clock.Position(now),
                       s.lookahead_seconds);
}

void Runner::GrowLiveLocked(Session& s) {
  if (!s.spec.live || s.stopped || s.next_unstarted_block < s.num_blocks() - 1) return;
  const int64_t room = s.live_limit_latent_frames - s.latent_bounds.back();
  if (room <= 0) {
    // The video ends with the blocks it has; commands are refused from here on.
    s.live_limit_reached = true;
    s.stopped = true;
    spdlog::info("{} live limit reached at {} frames", s.log_tag, s.info.num_frames);
    return;
  }
  const int64_t added = std::min<int64_t>(room, s.sampler_options.block_frames);
  s.AppendLatentFrames(added);
  s.pending_ops.push_back(ExtendOp{added});
  s.dit_done = false;
}

void Runner::ApplyOpsLocked(SessionRegistry::Lock& lock, Session& s) {
  try {
    while (!s.pending_ops.empty()) {
      std::visit(
          [&](const auto& op) {
            using T = std::decay_t<decltype(op)>;
            if constexpr (std::is_same_v<T, ExtendOp>) {
              s.sampler->Extend(op.latent_frames);
            } else {
              s.sampler->StopAfterBlock(op.last_block);
            }
          },
          s.pending_ops.front());
      s.pending_ops.pop_front();
    }
  } catch (...) {
    registry_.EndLocked(lock, s, StatusFromCurrentException("applying a command"));
    return;
  }
  s.dit_done = s.sampler->done();
}

bool Runner::StalledLocked(SessionRegistry::Lock& lock, Session& s, Clock::time_point now) {
  if (options_.stall_timeout.count() == 0) return false;
  if (!s.events->Congested()) {
    s.congested_since.reset();
    return false;
  }
  if (!s.congested_since) s.congested_since = now;
  if (now - *s.congested_since < options_.stall_timeout) return false;
  registry_.EndLocked(lock, s,
                      absl::DeadlineExceededError(StrCat(
                          "stalled: the client read nothing for ",
                          Seconds(now - *s.congested_since), " s, more than the stall budget of ",
                          std::chrono::duration<double>(options_.stall_timeout).count(),
                          " s (--stall-timeout); the session's slot was freed")));
  return true;
}

bool Runner::ApplySwitchesLocked(Session& s) {
  // A switch for block b applies while b has not started: before its first denoise step or
  // during its pending recache. Applying it before planning keeps the token count right
  // (a recache runs the previous block, which may have another length). Called every
  // iteration until the block starts (a paced session may wait): idempotent per block.
  SamplerSession& sampler = *s.sampler;
  const bool not_started =
      (sampler.phase() == SamplerSession::Phase::kDenoise && sampler.step() == 0) ||
      sampler.phase() == SamplerSession::Phase::kRecache;
  if (!not_started) return true;
  const int64_t block = sampler.block();
  bool changed = false;
  auto it = s.switches.find(block);
  if (it != s.switches.end()) {
    PendingSwitch& sw = it->second;
    if (!sw.ready) return false;  // its caption is still being encoded
    if (sw.transition_blocks > 0) {
      s.transition = CaptionTransition{s.active_caption, sw.caption, block, sw.transition_blocks,
                                       sw.command_id};
    } else {
      s.transition.reset();
    }
    s.active_caption = sw.caption;
    s.active_prompt = BlockPrompt{sw.command_id, 1.0};
    if (sw.mode == PromptSwitchMode::kRecache &&
        sampler.phase() == SamplerSession::Phase::kDenoise) {
      sampler.RequestRecache();
    }
    if (sw.command_id != 0) {
      s.switch_origins[block] = SwitchOrigin{sw.command_id, sw.received, sw.position_at_receipt};
    }
    s.switches.erase(it);
    changed = true;
  }
  if (!changed && s.caption_block == block) return true;
  s.caption_block = block;
  if (s.transition && block - s.transition->first_block >= s.transition->blocks) {
    s.transition.reset();  // blended over its blocks: the new caption alone from here on
    changed = true;
  }
  if (s.transition) {
    const CaptionTransition& t = *s.transition;
    const double weight = static_cast<double>(block - t.first_block + 1) / (t.blocks + 1);
    const Caption blend = BlendCaptions(t.from, t.to, weight);
    sampler.SetCaption(blend.embedding, blend.mask);
    s.block_prompts[block] = BlockPrompt{t.command_id, weight};
    return true;
  }
  if (changed) sampler.SetCaption(s.active_caption.embedding, s.active_caption.mask);
  if (s.active_prompt.command_id != 0) s.block_prompts[block] = s.active_prompt;
  return true;
}

absl::Status Runner::SetUp(Session& s) {
  const SessionSpec& spec = s.spec;
  try {
    auto encoder = Fmp4Encoder::Create(s.encoder_settings);
    if (!encoder.ok()) return encoder.status();
    auto cache = vae_.NewCache(spec.height / 8, spec.width / 8);
    if (!cache.ok()) return cache.status();
    s.encoder = *std::move(encoder);
    s.vae_cache = *std::move(cache);
    s.sampler = std::make_unique<SamplerSession>(
        dit_, s.sampler_options, (spec.num_frames - 1) / 4 + 1, spec.height / 8, spec.width / 8,
        s.caption.embedding, s.caption.mask, std::make_unique<SeededNoise>(spec.seed),
        spec.interactive);
    s.active_caption = s.caption;
  } catch (...) {
    return StatusFromCurrentException("allocating the session state");
  }
  return absl::OkStatus();
}

void Runner::Loop() {
  c10::InferenceMode inference;
  // Forwards on a stream of their own; the media and text workers have theirs.
  device::OwnStream stream(dit_.options().device);
  SessionRegistry::Lock lock(registry_);
  while (!registry_.stopping) {
    registry_.AdmitLocked(lock);
    const auto now = Clock::now();
    const std::vector<std::shared_ptr<Session>> release = registry_.ReleasableLocked();
    std::vector<std::shared_ptr<Session>> set_up;
    std::vector<ReadySession> ready;
    for (const auto& [id, s] : registry_.SessionsLocked()) {
      if (s->stage == Session::Stage::kAdmitted && s->captions_ready && !s->in_flight) {
        s->in_flight = true;
        set_up.push_back(s);
        continue;
      }
      if (s->stage != Session::Stage::kRunning || s->in_flight) continue;
      GrowLiveLocked(*s);
      ApplyOpsLocked(lock, *s);
      if (s->ended() || StalledLocked(lock, *s, now)) continue;
      if (s->dit_done) {
        MaybeCompleteLocked(lock, *s);
        continue;
      }
      if (!ApplySwitchesLocked(*s)) continue;
      if (!PacedMayRunLocked(*s, now)) continue;  // far enough ahead of its viewer
      if (MediaBacklogLocked(*s) >= kMaxMediaBacklogBlocks || s->events->Congested()) continue;
      ready.push_back(
          {s->id, s->sampler->next_token_count(), DeadlineLocked(*s, now), s->spec.priority});
    }
    std::vector<std::shared_ptr<Session>> batch;
    for (SessionId id : registry_.scheduler().Plan(ready).batch) {
      auto s = registry_.FindLocked(id);
      s->in_flight = true;
      // A denoise step 0 starts its block: later commands target the next one.
      const SamplerSession& sampler = *s->sampler;
      if (sampler.phase() == SamplerSession::Phase::kDenoise && sampler.step() == 0) {
        s->next_unstarted_block = std::max(s->next_unstarted_block, sampler.block() + 1);
      }
      batch.push_back(std::move(s));
    }
    if (release.empty() && set_up.empty() && batch.empty()) {
      lock.Sync();
      if (registry_.stopping) break;
      registry_.changed().wait_for(lock.raw(), kIdleWait);
      continue;
    }
    lock.Unlock();

    // Memory first, then (under the lock) the slot.
    for (const auto& s : release) {
      s->sampler.reset();
      s->vae_cache.reset();
      s->encoder.reset();
      s->caption = Caption();
      s->switches.clear();
      s->media_queue.clear();
    }
    std::vector<absl::Status> set_up_status;
    for (const auto& s : set_up) set_up_status.push_back(SetUp(*s));

    lock.Relock();
    for (const auto& s : release) registry_.FinishReleaseLocked(*s);
    for (size_t i = 0; i < set_up.size(); ++i) {
      Session& s = *set_up[i];
      s.in_flight = false;
      if (s.ended()) continue;  // cancelled meanwhile: released next iteration
      if (!set_up_status[i].ok()) {
        registry_.EndLocked(lock, s, set_up_status[i]);
        continue;
      }
      s.stage = Session::Stage::kRunning;
      s.start_time = Clock::now();
      spdlog::info("{} started after {:.2f} s in the queue", s.log_tag,
                   Seconds(s.start_time - s.submit_time));
      s.events->Started();
      lock.Notify(s.events);
    }
    if (!batch.empty()) {
      lock.Unlock();
      Execute(batch);
      lock.Relock();
    }
  }
}

void Runner::Execute(const std::vector<std::shared_ptr<Session>>& batch) {
  const auto t0 = Clock::now();
  const int64_t tokens_per_item = batch.front()->sampler->next_token_count();
  bool batch_failed = false;
  std::vector<SamplerSession*> samplers;
  std::vector<Before> before;
  for (const auto& s : batch) {
    samplers.push_back(s->sampler.get());
    before.push_back({s->sampler->block(), s->sampler->step(), s->sampler->phase()});
  }

  std::vector<absl::Status> errors(batch.size());
  const device::TransferCounts counts_before = device::ThreadCounts();
  try {
    RunSamplerStep(dit_, samplers, [&](int64_t layer) { CheckFaults(batch, before, layer); });
  } catch (...) {
    const absl::Status batch_error = StatusFromCurrentException("DiT forward");
    batch_failed = true;
    if (options_.after_failure) options_.after_failure();
    if (batch.size() == 1) {
      errors[0] = batch_error;
    } else {
      // Isolation: the failed step changed nothing, so each session retries alone and only
      // the ones that fail again end.
      spdlog::warn("batched forward of {} sessions failed ({}); retrying one by one", batch.size(),
                   batch_error.ToString());
      for (size_t i = 0; i < batch.size(); ++i) {
        try {
          SamplerSession* one[] = {samplers[i]};
          RunSamplerStep(dit_, one, [&](int64_t layer) {
            CheckFaults(std::span(batch).subspan(i, 1), std::span(before).subspan(i, 1), layer);
          });
        } catch (...) {
          errors[i] = StatusFromCurrentException("DiT forward");
        }
      }
    }
  }
  const int64_t step_host_waits = (device::ThreadCounts() - counts_before).host_waits;
  // The media workers wait for this fence on the device, not the host.
  const device::Fence done = device::Fence::Record(dit_.options().device);
  previous_forward_.HostWait();
  previous_forward_ = done;
  // On CUDA this is the time until the previous forward finished: in a steady stream of
  // forwards, one forward's device time, attributed one forward late.
  const double seconds = Seconds(Clock::now() - t0);
  if (options_.observer) {
    options_.observer->OnForward({.items = static_cast<int>(batch.size()),
                                  .tokens_per_item = tokens_per_item,
                                  .seconds = seconds,
                                  .failed = batch_failed,
                                  .step_host_waits = step_host_waits});
  }

  SessionRegistry::Lock lock(registry_);
  ++registry_.counters().forwards;
  registry_.counters().forward_items += batch.size();
  for (size_t i = 0; i < batch.size(); ++i) {
    Session& s = *batch[i];
    s.in_flight = false;
    if (s.ended()) continue;  // cancelled meanwhile: released next iteration
    if (!errors[i].ok()) {
      registry_.EndLocked(lock, s, errors[i]);
      continue;
    }
    SamplerSession& sampler = *s.sampler;
    const int num_steps = static_cast<int>(s.spec.timesteps.size());
    if (static_cast<int64_t>(s.block_dit_seconds.size()) <= before[i].block) {
      s.block_dit_seconds.resize(before[i].block + 1, 0.0);
      s.block_dit_share.resize(before[i].block + 1, 0.0);
    }
    s.block_dit_seconds[before[i].block] += seconds;
    s.block_dit_share[before[i].block] += seconds / static_cast<double>(batch.size());
    if (before[i].phase != SamplerSession::Phase::kRecache) {
      const int step =
          before[i].phase == SamplerSession::Phase::kCachePass ? num_steps : before[i].step + 1;
      s.events->Progress(before[i].block, step, num_steps);
      lock.Notify(s.events);
    }
    if (auto latent = sampler.TakeFinishedBlock()) {
      media_.PushLocked(
          lock, batch[i],
          MediaJob{before[i].block, *latent, done, s.block_dit_seconds[before[i].block],
                   s.block_dit_share[before[i].block]});
    }
    s.dit_done = s.pending_ops.empty() && sampler.done();
  }
  registry_.Wake();
}

}  // namespace longsana::engine
