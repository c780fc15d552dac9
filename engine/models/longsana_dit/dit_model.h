// The LongSANA DiT (SanaMSVideo_2000M_P2_D20 with the LongSANA cached modules; model.md §3-§6):
// one forward over one block of latent frames for a batch of work items from different
// sessions, each with its own latent, timestep, absolute frame offset, caption and state.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/loader/weights.h"
#include "engine/models/longsana_dit/dit_config.h"
#include "engine/models/longsana_dit/dit_state.h"
#include "engine/models/longsana_dit/rope.h"

namespace longsana::engine {

class ModelDirectory;

struct DitOptions {
  at::Device device = at::kCPU;
  // Weights and activations. fp32 on CPU; bf16 on CUDA, with fp32 RMSNorm arithmetic,
  // linear-attention state/numerator/normaliser and σ arithmetic as in the reference.
  at::ScalarType dtype = at::kFloat;
};

// One session's share of a batched forward.
struct DitWorkItem {
  at::Tensor latent;        // [C, F, H, W] float (normalised latent space), any device
  double timestep = 0.0;    // the model truncates it to an integer (t = float(long(t)))
  int64_t frame_offset = 0; // absolute latent index of the block's first frame (RoPE, §6)
  at::Tensor caption;       // [L, caption_channels]
  at::Tensor caption_mask;  // [L], 1 = token, 0 = padding
  DitSessionState* state = nullptr;  // read in every layer
  bool commit_state = false;  // cache pass: commit this block's contributions to `state`
};

// Intermediate tensors, recorded under the reference golden's `dbg/...` names (batch
// item 0 only, leading batch dimension kept). For parity debugging.
using DitTrace = std::map<std::string, at::Tensor>;

struct DitForwardOptions {
  DitTrace* trace = nullptr;  // null: no trace is recorded (and no names are built)
  // Non-null: filled with one entry per item (empty unless commit_state), and nothing is
  // committed: the caller applies them (DitSessionState::Apply) once its whole step has
  // succeeded. Null: the forward applies them itself after every layer succeeded.
  std::vector<DitStateCommit>* staged_commits = nullptr;
  // Called after each transformer layer; may throw (fault injection, cancellation).
  std::function<void(int64_t layer)> after_layer;
};

// Immutable after construction; Forward is const and may run concurrently on distinct
// sessions' states (the caller serialises use of any one state).
class DitModel {
 public:
  // Strictly loads transformer/ of a model directory (every missing, unexpected and
  // mis-shaped key reported together).
  static absl::StatusOr<std::unique_ptr<DitModel>> Load(const ModelDirectory& dir,
                                                        const DitOptions& options);
  // From already-loaded weights (named by DitParamSpecs), e.g. random weights for benchmarks.
  static absl::StatusOr<std::unique_ptr<DitModel>> Create(const DitConfig& config,
                                                          const Weights& weights,
                                                          const DitOptions& options);

  const DitConfig& config() const { return config_; }
  const DitOptions& options() const { return options_; }

  DitStateSpec StateSpec(int64_t latent_h, int64_t latent_w, int num_cached_blocks,
                         bool keep_recache_context = false) const;
  std::unique_ptr<DitSessionState> NewState(const DitStateSpec& spec) const;

  // Predicted flow velocity v = ε − x0 for every item: [B, C, F, H, W] float32 on the
  // model's device. All items must share (C, F, H, W) and the caption length. Items whose
  // commit_state is set get their block's S, z and last temporal-conv frame committed to
  // their state (the cache pass) once the whole forward succeeded, or staged (see
  // DitForwardOptions); others only read their state. Throws c10::Error on inconsistent
  // inputs; a forward that throws has changed no state.
  at::Tensor Forward(std::span<const DitWorkItem> items, const DitForwardOptions& options) const;
  at::Tensor Forward(std::span<const DitWorkItem> items, DitTrace* trace = nullptr) const;

 private:
  struct Block {
    at::Tensor scale_shift_table;  // [6, D]
    at::Tensor qkv_w;              // [3D, D] (to_q, to_k, to_v stacked)
    at::Tensor norm_q, norm_k;     // [D]
    at::Tensor out_w, out_b;       // attn1.to_out.0
    at::Tensor cq_w, cq_b;         // attn2.to_q
    at::Tensor ckv_w, ckv_b;       // [2D, D], [2D] (to_k, to_v stacked)
    at::Tensor cnorm_q, cnorm_k;
    at::Tensor cout_w, cout_b;     // attn2.to_out.0
    at::Tensor inv_w, inv_b;       // [2F, D], [2F]   (1x1 conv as a linear layer)
    at::Tensor depth_w, depth_b;   // [2F, 1, 3, 3], [2F]
    at::Tensor point_w;            // [D, F]
    at::Tensor temp_w;             // [D, 3D]: temporal taps (t-1, t, t+1) side by side
  };

  DitModel(DitConfig config, DitOptions options);

  at::Tensor TimestepEmbedding(const at::Tensor& t) const;
  at::Tensor BlockForward(int64_t layer, const at::Tensor& x, const at::Tensor& y,
                          const at::Tensor& mask_bias, const at::Tensor& t0,
                          const at::Tensor& rope_cos, const at::Tensor& rope_sin, int64_t frames,
                          int64_t grid_h, int64_t grid_w, std::span<const DitWorkItem> items,
                          DitTrace* trace, std::vector<DitStateCommit>& commits) const;
  // Returns the attention output [B, N, D] and the block's own S [B, H, d, d] and z [B, H, d].
  std::tuple<at::Tensor, at::Tensor, at::Tensor> SelfAttention(
      int64_t layer, const at::Tensor& h, const at::Tensor& rope_cos, const at::Tensor& rope_sin,
      std::span<const DitWorkItem> items) const;
  at::Tensor CrossAttention(const Block& b, const at::Tensor& x, const at::Tensor& y,
                            const at::Tensor& mask_bias) const;
  // Returns the FFN output [B, N, D] and the last frame of P [B, hw, D].
  std::pair<at::Tensor, at::Tensor> FeedForward(int64_t layer, const at::Tensor& h, int64_t frames,
                                                int64_t grid_h, int64_t grid_w,
                                                std::span<const DitWorkItem> items) const;

  DitConfig config_;
  DitOptions options_;
  Rope3d rope_;
  std::vector<Block> blocks_;
  at::Tensor patch_w_, patch_b_;  // [D, C*ph*pw], [D]
  at::Tensor t1_w_, t1_b_, t2_w_, t2_b_;
  at::Tensor t_block_w_, t_block_b_;
  at::Tensor cap1_w_, cap1_b_, cap2_w_, cap2_b_, cap_norm_;
  at::Tensor final_sst_;          // [2, D]
  at::Tensor proj_w_, proj_b_;
};

}  // namespace longsana::engine
