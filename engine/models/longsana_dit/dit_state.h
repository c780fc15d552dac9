// Per-session recurrent state of the LongSANA DiT (model.md §4.2, §5): per layer the
// linear-attention sums S (heads x d x d, fp32) and z (heads x d, fp32) of the previous
// blocks, and the previous block's last temporal-conv frame. Constant size: block 200 uses
// the same bytes as block 2.
//
// Bookkeeping (binding decision 8) reproduces the reference's summation order exactly:
//  - num_cached_blocks = -1 (global context): `base` = S_0 + ... + S_{j-2} and `last` = S_{j-1};
//    the context read by block j is base + last = ((S_0 + S_1) + ...) + S_{j-1}.
//  - num_cached_blocks = K > 0 (window): a ring of the last K own contributions, summed in
//    block order (oldest first) when read.
// Keeping the most recent contribution separate also lets a prompt switch replace it
// (model.md §7.5, "recache") without subtracting.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

#include "engine/models/longsana_dit/dit_config.h"

namespace longsana::engine {

// Shapes and byte size of one session's state, from the config and resolution alone.
struct DitStateSpec {
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t head_dim = 0;
  int64_t hidden_size = 0;
  int64_t tokens_per_frame = 0;  // (latent_h / p_h) * (latent_w / p_w)
  int num_cached_blocks = -1;    // -1: global context; K > 0: window of K blocks
  bool keep_recache_context = false;  // also keep the conv frame of the block before last
  at::ScalarType conv_dtype = at::kFloat;  // the activation dtype

  static DitStateSpec For(const DitConfig& config, int64_t latent_h, int64_t latent_w,
                          int num_cached_blocks, at::ScalarType activation_dtype,
                          bool keep_recache_context = false);

  // S/z slots per layer: 2 (base + last) for global context; K for a window (K + 1 with
  // keep_recache_context, so a rewound block still finds the contribution that left it).
  int64_t sum_slots() const {
    return num_cached_blocks < 0 ? 2 : num_cached_blocks + (keep_recache_context ? 1 : 0);
  }
  int64_t conv_slots() const { return keep_recache_context ? 2 : 1; }
  // Bytes of every tensor the state allocates.
  int64_t bytes() const;
};

// One block's own contribution to one layer, produced by the cache pass.
struct DitLayerContribution {
  at::Tensor s;     // [H, d, d] fp32 (value dim x key dim)
  at::Tensor z;     // [H, d] fp32
  at::Tensor conv;  // [tokens_per_frame, D] activation dtype: P of the block's last frame
};

// One block's contributions to every layer, staged by a cache-pass forward and applied
// with DitSessionState::Apply once the whole step succeeded (a failed forward leaves the
// state untouched). Empty for an item that was not a cache pass.
struct DitStateCommit {
  std::vector<DitLayerContribution> layers;  // index = layer
  bool empty() const { return layers.empty(); }
};

// Owns preallocated tensors on one device. Not thread-safe: the runner serialises access
// (a session is in at most one forward at a time).
class DitSessionState {
 public:
  DitSessionState(const DitStateSpec& spec, at::Device device);

  const DitStateSpec& spec() const { return spec_; }
  int64_t bytes() const;  // bytes actually allocated (equals spec().bytes())

  // Number of blocks committed so far (the next block's index).
  int64_t committed_blocks() const { return committed_; }

  // The context block `committed_blocks()` reads in layer `layer`.
  at::Tensor ContextS(int64_t layer) const;     // [H, d, d] fp32
  at::Tensor ContextZ(int64_t layer) const;     // [H, d] fp32
  at::Tensor ContextConv(int64_t layer) const;  // [tokens_per_frame, D] view; zeros at first

  // The most recently committed block's own contributions (committed_blocks() >= 1).
  at::Tensor LastS(int64_t layer) const;  // [H, d, d]
  at::Tensor LastZ(int64_t layer) const;  // [H, d]

  // Appends a finished block's contributions (one per layer).
  void Commit(int64_t layer, const DitLayerContribution& c);
  // Marks the block committed once every layer was committed.
  void FinishCommit() { ++committed_; }
  // Commit of every layer, then FinishCommit. In-place copies into the preallocated
  // tensors: fails only if the device itself does. No-op for an empty commit.
  void Apply(const DitStateCommit& commit);

  // Prompt switch with recache (model.md §7.5): rewinds the last committed block so its
  // cache pass can run again. Requires committed_blocks() >= 1 and, for the conv context,
  // spec().keep_recache_context. After the re-run's Commit/FinishCommit the state equals
  // one where that block was always committed with the new contributions.
  void RewindLastBlock();
  bool CanRewind() const;

 private:
  struct Layer {
    at::Tensor s;     // [slots, H, d, d]
    at::Tensor z;     // [slots, H, d]
    at::Tensor conv;  // [conv_slots, tokens_per_frame, D]
  };

  // For a window: ring position of the block `index` (index >= 0).
  int64_t RingSlot(int64_t index) const { return index % spec_.sum_slots(); }

  DitStateSpec spec_;
  std::vector<Layer> layers_;
  int64_t committed_ = 0;
};

}  // namespace longsana::engine
