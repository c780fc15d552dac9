#include "engine/sampler/longlive_sampler.h"

#include <algorithm>

#include "engine/common/device_ops.h"

namespace longsana::engine {

SamplerSession::SamplerSession(const DitModel& model, const SamplerOptions& options,
                               int64_t latent_frames, int64_t latent_h, int64_t latent_w,
                               at::Tensor caption, at::Tensor caption_mask,
                               std::unique_ptr<NoiseSource> noise, bool keep_recache_context)
    : model_(model),
      options_(options),
      sigma_table_(options.flow_shift),
      bounds_(BlockBoundaries(latent_frames, options.block_frames)),
      latent_h_(latent_h),
      latent_w_(latent_w),
      channels_(model.config().in_channels),
      noise_(std::move(noise)),
      keep_recache_context_(keep_recache_context) {
  TORCH_CHECK(options.Validate().ok(), "invalid sampler options: ", options.Validate().ToString());
  TORCH_CHECK(latent_frames >= 1, "a session needs at least one latent frame");
  SetCaption(std::move(caption), std::move(caption_mask));
  state_ = model.NewState(
      model.StateSpec(latent_h, latent_w, options.num_cached_blocks, keep_recache_context));
  StartBlock();
}

double SamplerSession::ModelTimestep(int step) const {
  const double t = options_.timesteps.at(step);
  return options_.timestep_mode == TimestepMode::kBf16Rounded ? RoundToBf16(t) : t;
}

float SamplerSession::SigmaX0(int step) const { return sigma_table_.Sigma(ModelTimestep(step)); }

float SamplerSession::SigmaRenoise(int step) const {
  return sigma_table_.Sigma(options_.timesteps.at(step + 1));
}

int64_t SamplerSession::next_token_count() const {
  const auto& p = model_.config().patch_size;
  const int64_t frames = phase_ == Phase::kRecache ? bounds_[block_] - bounds_[block_ - 1]
                                                   : block_end() - block_begin();
  return frames * (latent_h_ / p[1]) * (latent_w_ / p[2]);
}

at::Tensor SamplerSession::StartNoise(int64_t block) const {
  // Drawn on the host (the CPU generator keeps the noise identical on every device), then
  // queued for the device without a host wait.
  return device::Upload(noise_->BlockNoise(block, bounds_[block], bounds_[block + 1], channels_,
                                           latent_h_, latent_w_),
                        model_.options().device, at::kFloat);
}

void SamplerSession::StartBlock() {
  x_ = StartNoise(block_);
  step_ = 0;
  phase_ = Phase::kDenoise;
}

void SamplerSession::SetCaption(at::Tensor caption, at::Tensor caption_mask) {
  const at::Device device = model_.options().device;
  caption_ = device::ToDevice(caption, device, model_.options().dtype);
  caption_mask_ = device::ToDevice(caption_mask, device, caption_mask.scalar_type());
  // The text encoder computed them on a stream of its own.
  device::UseOnCurrentStream({caption_, caption_mask_});
}

DitWorkItem SamplerSession::NextWorkItem() {
  TORCH_CHECK(phase_ != Phase::kDone, "session is done");
  DitWorkItem item;
  item.frame_offset = block_begin();
  item.caption = caption_;
  item.caption_mask = caption_mask_;
  item.state = state_.get();
  if (phase_ == Phase::kDenoise) {
    item.latent = x_;
    item.timestep = ModelTimestep(step_);
  } else if (phase_ == Phase::kRecache) {
    item.latent = prev_latent_;
    item.frame_offset = bounds_[block_ - 1];
    item.timestep = 0.0;
    item.commit_state = true;
  } else {
    item.latent = x0_;
    item.timestep = 0.0;
    item.commit_state = true;
  }
  return item;
}

SamplerUpdate SamplerSession::Prepare(const at::Tensor& v, DitStateCommit state_commit) const {
  TORCH_CHECK(phase_ != Phase::kDone, "session is done");
  SamplerUpdate u;
  u.phase = phase_;
  u.block = block_;
  u.step = step_;
  u.x = x_;
  u.x0 = x0_;
  u.prev_latent = prev_latent_;
  u.state_commit = std::move(state_commit);
  ForwardRecord& record = u.record;
  record.block = block_;
  record.v = v;
  if (phase_ == Phase::kDenoise) {
    record.step = step_;
    record.t_model = ModelTimestep(step_);
    record.x_in = x_;
    // x0 = x − σ v in float64, rounded to fp32 (the reference's conversion).
    u.x0 = (x_.to(at::kDouble) - static_cast<double>(SigmaX0(step_)) * v.to(at::kDouble))
               .to(at::kFloat);
    record.x0 = u.x0;
    const int last = static_cast<int>(options_.timesteps.size()) - 1;
    if (step_ < last) {
      const float sigma = SigmaRenoise(step_);
      at::Tensor eps = device::Upload(noise_->Renoise(block_, step_, block_end() - block_begin(),
                                                      channels_, latent_h_, latent_w_),
                                      u.x0.device(), at::kFloat);
      u.x = u.x0 * (1.0f - sigma) + eps * sigma;
      ++u.step;
    } else {
      u.phase = Phase::kCachePass;
    }
  } else if (phase_ == Phase::kRecache) {
    record.step = -2;
    record.x_in = prev_latent_;
    u.phase = Phase::kDenoise;  // now denoise the block with the re-cached state
  } else {
    record.step = -1;
    record.t_model = 0.0;
    record.x_in = x0_;
    u.finished = x0_;
    if (keep_recache_context_) u.prev_latent = x0_;
    if (block_ + 2 < static_cast<int64_t>(bounds_.size())) {
      u.block = block_ + 1;
      u.x = StartNoise(u.block);
      u.step = 0;
      u.phase = Phase::kDenoise;
    } else {
      u.phase = Phase::kDone;  // block() stays at the last block once done
    }
  }
  return u;
}

void SamplerSession::Commit(SamplerUpdate update) {
  state_->Apply(update.state_commit);
  phase_ = update.phase;
  block_ = update.block;
  step_ = update.step;
  x_ = std::move(update.x);
  x0_ = std::move(update.x0);
  prev_latent_ = std::move(update.prev_latent);
  if (update.finished) finished_ = std::move(update.finished);
  update.record.state = state_.get();
  if (observer_) observer_(update.record);
}

std::optional<at::Tensor> SamplerSession::TakeFinishedBlock() {
  std::optional<at::Tensor> out;
  out.swap(finished_);
  return out;
}

int64_t SamplerSession::Extend(int64_t latent_frames) {
  TORCH_CHECK(latent_frames >= 1, "extend needs at least one latent frame");
  const int64_t first_new = num_blocks();
  int64_t end = bounds_.back();
  const int64_t target = end + latent_frames;
  while (end < target) {
    end = std::min(target, end + options_.block_frames);
    bounds_.push_back(end);
  }
  if (phase_ == Phase::kDone) {
    at::Tensor x = StartNoise(first_new);
    block_ = first_new;
    x_ = std::move(x);
    step_ = 0;
    phase_ = Phase::kDenoise;
  }
  return first_new;
}

int64_t SamplerSession::StopAfterCurrentBlock() {
  StopAfterBlock(block_);
  return block_;
}

void SamplerSession::StopAfterBlock(int64_t last_block) {
  TORCH_CHECK(last_block >= 0 && last_block < num_blocks(), "no block ", last_block);
  bounds_.resize(last_block + 2);
  if (block_ > last_block) {  // the current block had not started: end before it
    block_ = last_block;
    phase_ = Phase::kDone;
  }
}

bool SamplerSession::RequestRecache() {
  if (!keep_recache_context_ || phase_ != Phase::kDenoise || step_ != 0 || block_ < 1 ||
      !prev_latent_.defined() || !state_->CanRewind()) {
    return false;
  }
  state_->RewindLastBlock();
  phase_ = Phase::kRecache;
  return true;
}

void RunSamplerStep(const DitModel& model, std::span<SamplerSession* const> sessions,
                    const std::function<void(int64_t layer)>& after_layer) {
  std::vector<DitWorkItem> items;
  items.reserve(sessions.size());
  for (SamplerSession* s : sessions) items.push_back(s->NextWorkItem());
  std::vector<DitStateCommit> commits;
  DitForwardOptions forward;
  forward.staged_commits = &commits;
  forward.after_layer = after_layer;
  at::Tensor v = model.Forward(items, forward);  // [B, C, F, h, w]
  // Phase 1 may throw and changes nothing; phase 2 only moves tensors and applies the
  // staged state commits in place.
  std::vector<SamplerUpdate> updates;
  updates.reserve(sessions.size());
  for (size_t i = 0; i < sessions.size(); ++i) {
    updates.push_back(sessions[i]->Prepare(v[i], std::move(commits[i])));
  }
  for (size_t i = 0; i < sessions.size(); ++i) sessions[i]->Commit(std::move(updates[i]));
}

at::Tensor GenerateLatents(const DitModel& model, SamplerSession& session) {
  std::vector<at::Tensor> blocks;
  SamplerSession* one[] = {&session};
  while (!session.done()) {
    RunSamplerStep(model, one);
    if (auto block = session.TakeFinishedBlock()) blocks.push_back(*block);
  }
  return at::cat(blocks, 1);  // [C, T, h, w]
}

}  // namespace longsana::engine
