#include "engine/models/longsana_dit/dit_state.h"

#include <algorithm>

namespace longsana::engine {

DitStateSpec DitStateSpec::For(const DitConfig& config, int64_t latent_h, int64_t latent_w,
                               int num_cached_blocks, at::ScalarType activation_dtype,
                               bool keep_recache_context) {
  DitStateSpec s;
  s.num_layers = config.num_layers;
  s.num_heads = config.num_attention_heads;
  s.head_dim = config.attention_head_dim;
  s.hidden_size = config.hidden_size();
  s.tokens_per_frame = (latent_h / config.patch_size[1]) * (latent_w / config.patch_size[2]);
  s.num_cached_blocks = num_cached_blocks;
  s.keep_recache_context = keep_recache_context;
  s.conv_dtype = activation_dtype;
  return s;
}

int64_t DitStateSpec::bytes() const {
  const int64_t sums = sum_slots() * num_heads * (head_dim * head_dim + head_dim) * 4;
  const int64_t conv =
      conv_slots() * tokens_per_frame * hidden_size * static_cast<int64_t>(c10::elementSize(conv_dtype));
  return num_layers * (sums + conv);
}

DitSessionState::DitSessionState(const DitStateSpec& spec, at::Device device) : spec_(spec) {
  TORCH_CHECK(spec.num_cached_blocks == -1 || spec.num_cached_blocks > 0,
              "num_cached_blocks must be -1 or positive, got ", spec.num_cached_blocks);
  const auto f32 = at::TensorOptions().dtype(at::kFloat).device(device);
  const int64_t h = spec.num_heads, d = spec.head_dim;
  layers_.reserve(spec.num_layers);
  for (int64_t l = 0; l < spec.num_layers; ++l) {
    layers_.push_back(Layer{
        at::zeros({spec.sum_slots(), h, d, d}, f32),
        at::zeros({spec.sum_slots(), h, d}, f32),
        at::zeros({spec.conv_slots(), spec.tokens_per_frame, spec.hidden_size},
                  f32.dtype(spec.conv_dtype)),
    });
  }
}

int64_t DitSessionState::bytes() const {
  int64_t n = 0;
  for (const auto& l : layers_) {
    n += l.s.numel() * l.s.element_size() + l.z.numel() * l.z.element_size() +
         l.conv.numel() * l.conv.element_size();
  }
  return n;
}

at::Tensor DitSessionState::ContextS(int64_t layer) const {
  const Layer& l = layers_.at(layer);
  if (spec_.num_cached_blocks < 0) return l.s[0] + l.s[1];  // base + last
  const int64_t n = std::min<int64_t>(committed_, spec_.num_cached_blocks);
  if (n == 0) return at::zeros_like(l.s[0]);
  const int64_t first = committed_ - n;
  at::Tensor sum = l.s[RingSlot(first)].clone();
  for (int64_t i = first + 1; i < committed_; ++i) sum.add_(l.s[RingSlot(i)]);
  return sum;
}

at::Tensor DitSessionState::ContextZ(int64_t layer) const {
  const Layer& l = layers_.at(layer);
  if (spec_.num_cached_blocks < 0) return l.z[0] + l.z[1];
  const int64_t n = std::min<int64_t>(committed_, spec_.num_cached_blocks);
  if (n == 0) return at::zeros_like(l.z[0]);
  const int64_t first = committed_ - n;
  at::Tensor sum = l.z[RingSlot(first)].clone();
  for (int64_t i = first + 1; i < committed_; ++i) sum.add_(l.z[RingSlot(i)]);
  return sum;
}

at::Tensor DitSessionState::ContextConv(int64_t layer) const {
  return layers_.at(layer).conv[0];  // the previous block's frame; zeros before the first
}

at::Tensor DitSessionState::LastS(int64_t layer) const {
  TORCH_CHECK(committed_ >= 1, "no block committed yet");
  const Layer& l = layers_.at(layer);
  return spec_.num_cached_blocks < 0 ? l.s[1] : l.s[RingSlot(committed_ - 1)];
}

at::Tensor DitSessionState::LastZ(int64_t layer) const {
  TORCH_CHECK(committed_ >= 1, "no block committed yet");
  const Layer& l = layers_.at(layer);
  return spec_.num_cached_blocks < 0 ? l.z[1] : l.z[RingSlot(committed_ - 1)];
}

void DitSessionState::Commit(int64_t layer, const DitLayerContribution& c) {
  Layer& l = layers_.at(layer);
  if (spec_.num_cached_blocks < 0) {
    l.s[0].add_(l.s[1]);  // base += last, preserving the reference's block-order sum
    l.z[0].add_(l.z[1]);
    l.s[1].copy_(c.s);
    l.z[1].copy_(c.z);
  } else {
    l.s[RingSlot(committed_)].copy_(c.s);
    l.z[RingSlot(committed_)].copy_(c.z);
  }
  if (spec_.keep_recache_context) l.conv[1].copy_(l.conv[0]);
  l.conv[0].copy_(c.conv);
}

void DitSessionState::Apply(const DitStateCommit& commit) {
  if (commit.empty()) return;
  TORCH_CHECK(static_cast<int64_t>(commit.layers.size()) == spec_.num_layers, "commit has ",
              commit.layers.size(), " layers, the state ", spec_.num_layers);
  for (int64_t l = 0; l < spec_.num_layers; ++l) Commit(l, commit.layers[l]);
  FinishCommit();
}

bool DitSessionState::CanRewind() const { return committed_ >= 1 && spec_.keep_recache_context; }

void DitSessionState::RewindLastBlock() {
  TORCH_CHECK(CanRewind(), "cannot rewind: ", committed_,
              " blocks committed, keep_recache_context=", spec_.keep_recache_context);
  for (Layer& l : layers_) {
    if (spec_.num_cached_blocks < 0) {
      // The context of the rewound block is `base` alone; the re-run's Commit then folds
      // this zero into base (exactly) and stores its new contribution as `last`.
      l.s[1].zero_();
      l.z[1].zero_();
    }
    l.conv[0].copy_(l.conv[1]);
  }
  --committed_;
}

}  // namespace longsana::engine
