// The LongLive flow-Euler sampler (model.md §7) as a step-level state machine per session,
// so a scheduler can batch DiT forwards across sessions: each session exposes the work item
// of its next forward (denoise step k of its current block, or the block's cache pass) and
// consumes the model's output.
//
// Per block j with frames [a, b):  x = noise(block j)
//   for k, t_k in timesteps:  v = DiT(x, t_model(k), state read-only)
//                             x0 = x − σ_x0(k)·v
//                             k < last: x = (1 − σ(t_{k+1}))·x0 + σ(t_{k+1})·ε_k
//   cache pass:               DiT(x0, t = 0) commits block j's S, z and conv frame to the state
// where t_model and σ_x0 follow the TimestepMode (binding decision 2).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "engine/models/longsana_dit/dit_model.h"
#include "engine/sampler/noise.h"
#include "engine/sampler/sampler_options.h"
#include "engine/sampler/sigma_table.h"

namespace longsana::engine {

// What one forward of a session did; handed to an observer (parity traces, tests).
struct ForwardRecord {
  int64_t block = 0;
  int step = 0;              // denoise step index, -1 for the cache pass, -2 for a recache
  double t_model = 0.0;      // timestep given to the model (before its integer truncation)
  at::Tensor x_in;           // [C, F, h, w]
  at::Tensor v;              // [C, F, h, w]
  at::Tensor x0;             // denoise steps only
  const DitSessionState* state = nullptr;  // after the forward (committed for the cache pass)
};
using ForwardObserver = std::function<void(const ForwardRecord&)>;

enum class SamplerPhase {
  kDenoise,    // denoise step step() of block()
  kCachePass,  // the cache pass of block()
  kRecache,    // prompt switch: block()-1's cache pass again, with the new caption (§7.5)
  kDone,
};

// What one forward does to a session, computed by SamplerSession::Prepare without changing
// the session and applied by Commit. Plain values: dropping one undoes nothing.
struct SamplerUpdate {
  SamplerPhase phase = SamplerPhase::kDenoise;  // after the forward
  int64_t block = 0;
  int step = 0;
  at::Tensor x, x0, prev_latent;
  std::optional<at::Tensor> finished;
  DitStateCommit state_commit;  // the cache pass's staged DiT state commit
  ForwardRecord record;
};

// One generation session's sampler state. Not thread-safe; the runner serialises access.
// Memory is constant in the video length: the current block's latent, the last finished
// block, and the DiT state.
class SamplerSession {
 public:
  using Phase = SamplerPhase;

  // `caption` [L, caption_channels] and `caption_mask` [L]. Draws come from `noise`.
  // keep_recache_context sizes the state for prompt switches with recache.
  SamplerSession(const DitModel& model, const SamplerOptions& options, int64_t latent_frames,
                 int64_t latent_h, int64_t latent_w, at::Tensor caption, at::Tensor caption_mask,
                 std::unique_ptr<NoiseSource> noise, bool keep_recache_context = false);

  Phase phase() const { return phase_; }
  bool done() const { return phase_ == Phase::kDone; }
  int64_t block() const { return block_; }
  int step() const { return step_; }
  int64_t num_blocks() const { return static_cast<int64_t>(bounds_.size()) - 1; }
  int64_t block_begin() const { return bounds_[block_]; }
  int64_t block_end() const { return bounds_[block_ + 1]; }
  int64_t latent_frames() const { return bounds_.back(); }
  const std::vector<int64_t>& boundaries() const { return bounds_; }
  // Token-count key for batching: sessions whose next forwards share it can run together.
  int64_t next_token_count() const;

  // The work item of the next forward. Valid until Advance() / Commit().
  DitWorkItem NextWorkItem();
  // Two phases, so that a batch whose step fails part-way leaves every session as it was:
  // Prepare computes the effect of that forward's output v [C, F, h, w] (and takes the
  // forward's staged state commit), may throw, and changes nothing; Commit applies it.
  SamplerUpdate Prepare(const at::Tensor& v, DitStateCommit state_commit = {}) const;
  void Commit(SamplerUpdate update);
  // Prepare + Commit, for a forward that committed the state itself.
  void Advance(const at::Tensor& v) { Commit(Prepare(v)); }

  // After a cache pass: the block's clean latent [C, F, h, w] fp32 (once).
  std::optional<at::Tensor> TakeFinishedBlock();

  // The caption used from the next forward on (prompt switch, IMMEDIATE).
  void SetCaption(at::Tensor caption, at::Tensor caption_mask);
  // Appends latent frames at the end, in blocks of options.block_frames (the last may be
  // shorter). Returns the index of the first new block.
  int64_t Extend(int64_t latent_frames);
  // Ends the video after the current block (stop). Returns the index of the last block.
  int64_t StopAfterCurrentBlock();
  // Ends the video after block `last_block` (>= the current block if it has started).
  void StopAfterBlock(int64_t last_block);

  // Prompt switch with recache: before block() (which must not have started: phase
  // kDenoise, step 0, block() >= 1) re-run block()-1's cache pass with the current caption
  // on the state rewound to before that block. Needs keep_recache_context. False (and no
  // change) when not possible.
  bool RequestRecache();

  DitSessionState& state() { return *state_; }
  const DitSessionState& state() const { return *state_; }
  const SamplerOptions& options() const { return options_; }
  void set_observer(ForwardObserver observer) { observer_ = std::move(observer); }

  // Timesteps/σ this session uses (for checks).
  double ModelTimestep(int step) const;
  float SigmaX0(int step) const;
  float SigmaRenoise(int step) const;  // re-noise toward timesteps[step + 1]

 private:
  void StartBlock();
  at::Tensor StartNoise(int64_t block) const;  // block's initial noise on the device

  const DitModel& model_;
  SamplerOptions options_;
  SigmaTable sigma_table_;
  std::vector<int64_t> bounds_;
  int64_t latent_h_, latent_w_, channels_;
  at::Tensor caption_, caption_mask_;
  std::unique_ptr<NoiseSource> noise_;
  std::unique_ptr<DitSessionState> state_;
  Phase phase_ = Phase::kDenoise;
  int64_t block_ = 0;
  int step_ = 0;
  at::Tensor x_;        // current noisy latent of the block [C, F, h, w] fp32 on the device
  at::Tensor x0_;       // last x0 prediction
  std::optional<at::Tensor> finished_;
  bool keep_recache_context_ = false;
  at::Tensor prev_latent_;  // the last finished block's latent (recache only)
  ForwardObserver observer_;
};

// Runs one batched forward over the next work item of every session and advances each.
// All sessions must share next_token_count() and the model; a session appears at most once.
// All or nothing: when it throws (in the forward, in `after_layer`, or while preparing an
// update) no session and no state has changed, so the step can be retried.
void RunSamplerStep(const DitModel& model, std::span<SamplerSession* const> sessions,
                    const std::function<void(int64_t layer)>& after_layer = {});

// Runs one session to the end; returns the whole clean latent [C, T, h, w] (tests, parity).
at::Tensor GenerateLatents(const DitModel& model, SamplerSession& session);

}  // namespace longsana::engine
