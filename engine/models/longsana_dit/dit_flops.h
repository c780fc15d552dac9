// FLOPs of one DiT forward, counted from the config (model.md §3-§5), torch-free: every
// matmul and convolution as 2 x multiply-adds; elementwise work (norms, modulation, RoPE,
// activations, the softmax) is left out, so achieved / counted is a lower bound of the
// hardware's work and the ratio to the peak is the usual MFU.
#pragma once

#include <cstdint>

#include "engine/models/longsana_dit/dit_config.h"

namespace longsana::engine {

struct DitFlops {
  // Per forward of one work item (batch 1).
  double patch_embed = 0;   // Conv3d (1,2,2) as a matmul over the video tokens
  double conditioning = 0;  // timestep MLP and t_block, caption fc1/fc2 (per item, not per token)
  double self_attn = 0;     // q/k/v and output projections
  double linear_attn = 0;   // S = sum v k^T, S q, z^T phi(q)
  double cross_attn = 0;    // q, k/v (over the caption), scores, weighted sum, output
  double ffn = 0;           // inverted 1x1, depthwise 3x3, point 1x1, temporal (3,1)
  double final_layer = 0;   // proj_out
  double total() const {
    return patch_embed + conditioning + self_attn + linear_attn + cross_attn + ffn + final_layer;
  }
};

// One forward over `latent_frames` x latent_h x latent_w (tokens: frames x h/p_h x w/p_w)
// with `caption_len` caption tokens (padded ones included: the kernels do that work).
DitFlops CountDitForwardFlops(const DitConfig& config, int64_t latent_frames, int64_t latent_h,
                              int64_t latent_w, int64_t caption_len);

}  // namespace longsana::engine
